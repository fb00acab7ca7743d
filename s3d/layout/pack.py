"""Side-by-side and over-under packing, full or half (squeezed), the inverse split, and RGB+depth.

All functions take and return float images ``(B, 3, H, W)`` in ``[0, 1]``; the left eye is first
unless ``left_first=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s3d.layout.anaglyph import anaglyph
from s3d.layout.vr180 import pack_vr180, vr180_canvas_size

# Cross-eyed viewing (and players set to "RL"): side by side with the right eye first.
CROSS = {"full_cross": "full_sbs", "half_cross": "half_sbs"}
# One eye and its depth side by side, for players that render the views themselves (near = white).
RGBD = {"full_rgbd": "full_sbs", "half_rgbd": "half_sbs"}
LAYOUTS = ("full_sbs", "half_sbs", "full_ou", "half_ou", *CROSS, *RGBD, "vr180", "anaglyph")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}', expected one of {', '.join(LAYOUTS)}")


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def packed_size(layout: str, height: int, width: int, canvas: int = 0, screen_degrees: float = 90.0) -> tuple[int, int]:
    """Frame size ``(H, W)`` of the packed output for eyes of ``height x width`` (``canvas``, ``screen_degrees``:
    the VR180 canvas, :mod:`s3d.layout.vr180`)."""
    _check_layout(layout)
    if layout == "vr180":
        n = vr180_canvas_size(height, width, canvas, screen_degrees)
        return n, 2 * n
    layout = CROSS.get(layout, RGBD.get(layout, layout))
    return {
        "full_sbs": (height, 2 * width),
        "half_sbs": (height, 2 * (width // 2)),
        "full_ou": (2 * height, width),
        "half_ou": (2 * (height // 2), width),
        "anaglyph": (height, width),
    }[layout]


def pack(
    left: torch.Tensor,
    right: torch.Tensor,
    layout: str,
    left_first: bool = True,
    anaglyph_method: str = "dubois",
    canvas: int = 0,
    screen_degrees: float = 90.0,
) -> torch.Tensor:
    """Pack two eyes into one frame.

    ``left, right (B, 3, H, W) -> (B, 3, H', W')`` with ``(H', W') = packed_size(layout, H, W)``.
    Half layouts squeeze each eye to half the width (SBS) or height (OU) with an antialiased resize.
    """
    _check_layout(layout)
    if layout in CROSS:
        return pack(left, right, CROSS[layout], not left_first)
    if layout in RGBD:
        raise ValueError(f"{layout} packs an eye with its depth, not two eyes: use pack_rgbd")
    if left.shape != right.shape or left.dim() != 4:
        raise ValueError(f"eyes must be two (B, C, H, W) tensors of one shape, got {tuple(left.shape)} and {tuple(right.shape)}")
    if layout == "anaglyph":
        return anaglyph(left, right, anaglyph_method)
    if layout == "vr180":
        return pack_vr180(left, right, canvas, screen_degrees) if left_first else pack_vr180(right, left, canvas, screen_degrees)
    first, second = (left, right) if left_first else (right, left)
    h, w = left.shape[-2:]
    if layout == "half_sbs":
        first, second = _resize(first, h, w // 2), _resize(second, h, w // 2)
    elif layout == "half_ou":
        first, second = _resize(first, h // 2, w), _resize(second, h // 2, w)
    return torch.cat((first, second), dim=-1 if layout.endswith("sbs") else -2)


def pack_rgbd(image: torch.Tensor, nearness: torch.Tensor, layout: str) -> torch.Tensor:
    """The eye beside its depth as grey (0 = farthest, 1 = nearest), full or half width each.

    ``image (B, 3, H, W)``, ``nearness (B, 1, H, W)`` in ``[0, 1]`` ``-> (B, 3, H', W')`` with
    ``(H', W') = packed_size(layout, H, W)``.
    """
    if layout not in RGBD:
        raise ValueError(f"unknown RGB+depth layout '{layout}', expected one of {', '.join(RGBD)}")
    if image.dim() != 4 or image.shape[1] != 3 or nearness.shape != (image.shape[0], 1, *image.shape[-2:]):
        raise ValueError(f"expected image (B, 3, H, W) and nearness (B, 1, H, W), got {tuple(image.shape)} and {tuple(nearness.shape)}")
    return pack(image, nearness.clamp(0, 1).expand(-1, 3, -1, -1).to(image.dtype), RGBD[layout])


def split(frame: torch.Tensor, layout: str, left_first: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a packed SBS/OU frame into ``(left, right)``; half layouts are stretched back to full aspect.

    ``(B, C, H, W) -> ((B, C, h, w), (B, C, h, w))``. An odd middle column/row is dropped.
    """
    _check_layout(layout)
    if layout in CROSS:
        return split(frame, CROSS[layout], not left_first)
    if layout in RGBD:
        raise ValueError(f"{layout} holds one eye and its depth, not two eyes")
    if layout == "vr180":
        raise ValueError("a VR180 canvas is not split back into flat eyes")
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
