"""Side-by-side and over-under packing, full or half (squeezed), and the inverse split.

All functions take and return float images ``(B, 3, H, W)`` in ``[0, 1]``; the left eye is first
unless ``left_first=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s3d.layout.anaglyph import anaglyph

# Cross-eyed viewing (and players set to "RL"): side by side with the right eye first.
CROSS = {"full_cross": "full_sbs", "half_cross": "half_sbs"}
LAYOUTS = ("full_sbs", "half_sbs", "full_ou", "half_ou", *CROSS, "anaglyph")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}', expected one of {', '.join(LAYOUTS)}")


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def packed_size(layout: str, height: int, width: int) -> tuple[int, int]:
    """Frame size ``(H, W)`` of the packed output for eyes of ``height x width``."""
    _check_layout(layout)
    layout = CROSS.get(layout, layout)
    return {
        "full_sbs": (height, 2 * width),
        "half_sbs": (height, 2 * (width // 2)),
        "full_ou": (2 * height, width),
        "half_ou": (2 * (height // 2), width),
        "anaglyph": (height, width),
    }[layout]


def pack(left: torch.Tensor, right: torch.Tensor, layout: str, left_first: bool = True, anaglyph_method: str = "dubois") -> torch.Tensor:
    """Pack two eyes into one frame.

    ``left, right (B, 3, H, W) -> (B, 3, H', W')`` with ``(H', W') = packed_size(layout, H, W)``.
    Half layouts squeeze each eye to half the width (SBS) or height (OU) with an antialiased resize.
    """
    _check_layout(layout)
    if layout in CROSS:
        return pack(left, right, CROSS[layout], not left_first)
    if left.shape != right.shape or left.dim() != 4:
        raise ValueError(f"eyes must be two (B, C, H, W) tensors of one shape, got {tuple(left.shape)} and {tuple(right.shape)}")
    if layout == "anaglyph":
        return anaglyph(left, right, anaglyph_method)
    first, second = (left, right) if left_first else (right, left)
    h, w = left.shape[-2:]
    if layout == "half_sbs":
        first, second = _resize(first, h, w // 2), _resize(second, h, w // 2)
    elif layout == "half_ou":
        first, second = _resize(first, h // 2, w), _resize(second, h // 2, w)
    return torch.cat((first, second), dim=-1 if layout.endswith("sbs") else -2)


def split(frame: torch.Tensor, layout: str, left_first: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a packed SBS/OU frame into ``(left, right)``; half layouts are stretched back to full aspect.

    ``(B, C, H, W) -> ((B, C, h, w), (B, C, h, w))``. An odd middle column/row is dropped.
    """
    _check_layout(layout)
    if layout in CROSS:
        return split(frame, CROSS[layout], not left_first)
    if layout == "anaglyph":
        raise ValueError("an anaglyph cannot be split back into two colour eyes")
    h, w = frame.shape[-2:]
    if layout.endswith("sbs"):
        a, b = frame[..., : w // 2], frame[..., w - w // 2 :][..., : w // 2]
        if layout == "half_sbs":
            a, b = _resize(a, h, 2 * (w // 2)), _resize(b, h, 2 * (w // 2))
    else:
        a, b = frame[..., : h // 2, :], frame[..., h - h // 2 :, :][..., : h // 2, :]
        if layout == "half_ou":
            a, b = _resize(a, 2 * (h // 2), w), _resize(b, 2 * (h // 2), w)
    return (a, b) if left_first else (b, a)
