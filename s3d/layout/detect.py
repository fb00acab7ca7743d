"""Which stereo layout a film uses, from its container metadata, its file name, or its pixels."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Matroska StereoMode names as libavformat reports them in the stream metadata.
METADATA_MODES = {
    "left_right": ("sbs", True),
    "right_left": ("sbs", False),
    "top_bottom": ("ou", True),
    "bottom_top": ("ou", False),
}
# File-name tokens used by VR players and release groups.
NAME_TOKENS = {
    "sbs": ("sbs", None),
    "lr": ("sbs", True),
    "lrf": ("sbs", True),
    "rl": ("sbs", False),
    "3dh": ("sbs", None),
    "hsbs": ("sbs", None),
    "fsbs": ("sbs", None),
    "tb": ("ou", True),
    "tbf": ("ou", True),
    "bt": ("ou", False),
    "ou": ("ou", None),
    "tab": ("ou", None),
    "3dv": ("ou", None),
    "htab": ("ou", None),
    "hou": ("ou", None),
    "topbottom": ("ou", True),
    "overunder": ("ou", None),
}
HALF_TOKENS, FULL_TOKENS = {"half", "hsbs", "htab", "hou", "3dh", "3dv"}, {"full", "fsbs", "lrf", "tbf"}


@dataclass(frozen=True)
class StereoLayout:
    arrangement: str  # "sbs" or "ou"
    half: bool  # each eye squeezed to half width (SBS) / height (OU)
    left_first: bool
    source: str  # what told us: metadata, name, content

    @property
    def name(self) -> str:
        """The :mod:`s3d.layout.pack` layout name: ``full_sbs``, ``half_ou``, ..."""
        return f"{'half' if self.half else 'full'}_{self.arrangement}"


def half_from_aspect(arrangement: str, width: int, height: int) -> bool:
    """Squeezed eyes look too narrow (SBS, under 1.2:1) or too wide (OU, over 2.5:1) for a film frame."""
    if arrangement == "sbs":
        return (width / 2) / height < 1.2
    return width / (height / 2) > 2.5


def from_metadata(metadata: dict[str, str]) -> tuple[str, bool] | None:
    mode = metadata.get("stereo_mode", "").lower()
    return METADATA_MODES.get(mode)


def from_name(name: str) -> tuple[str, bool | None, bool | None] | None:
    """``(arrangement, left_first or None, half or None)`` from the file name's tokens, or ``None``."""
    joined = {r"left[-_ .]?right": "lr", r"right[-_ .]?left": "rl", r"top[-_ .]?bottom": "tb", r"bottom[-_ .]?top": "bt"}
    name = name.lower()
    for pattern, token in joined.items():  # stereo photo names: calf-left-right.jpg, card.right-left.jpg
        name = re.sub(pattern, token, name)
    tokens = [t for t in re.split(r"[^a-z0-9]+", name) if t]
    found = [NAME_TOKENS[t] for t in tokens if t in NAME_TOKENS]
    if not found or len({a for a, _ in found}) != 1:
        return None
    left_first = next((lf for _, lf in found if lf is not None), None)
    half = True if HALF_TOKENS & set(tokens) else False if FULL_TOKENS & set(tokens) else None
    return found[0][0], left_first, half


def _ncc(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-8))


def from_content(frame: torch.Tensor, size: int = 64) -> tuple[str, float, float]:
    """Compare the halves of a frame: ``(arrangement, ncc of the chosen halves, ncc of the others)``.

    ``frame (3, H, W)`` in ``[0, 1]``. The two eyes of one scene correlate strongly; the left and right
    (or top and bottom) halves of one mono picture do not.
    """
    grey = frame.mean(0, keepdim=True)[None]
    h, w = grey.shape[-2:]

    def small(x):
        return F.interpolate(x, size=(size, size), mode="area")[0, 0]

    sbs = _ncc(small(grey[..., : w // 2]), small(grey[..., w - w // 2 :]))
    ou = _ncc(small(grey[..., : h // 2, :]), small(grey[..., h - h // 2 :, :]))
    return ("sbs", sbs, ou) if sbs >= ou else ("ou", ou, sbs)


def detect_layout(name: str, metadata: dict[str, str], frame: torch.Tensor | None) -> StereoLayout | None:
    """Metadata first, then the file name, then the pixels; ``None`` if nothing says it is stereo."""
    h, w = frame.shape[-2:] if frame is not None else (0, 0)
    meta = from_metadata(metadata)
    if meta:
        arrangement, left_first = meta
        return StereoLayout(arrangement, half_from_aspect(arrangement, w, h) if h else False, left_first, "metadata")
    named = from_name(name)
    if named:
        arrangement, left_first, half = named
        if half is None:
            half = half_from_aspect(arrangement, w, h) if h else False
        return StereoLayout(arrangement, half, True if left_first is None else left_first, "name")
    if frame is not None:
        arrangement, best, other = from_content(frame)
        if best > 0.5 and best - other > 0.2:
            return StereoLayout(arrangement, half_from_aspect(arrangement, w, h), True, f"content (halves correlate {best:.2f} vs {other:.2f})")
    return None
