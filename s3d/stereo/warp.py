"""Warping one eye into the other (see :mod:`s3d.stereo` for the conventions).

Conversion uses depth-image-based rendering in three steps, all batched on the input's device:
1. :func:`forward_disparity` splats the source-view disparity into the target view, nearest point wins;
2. :func:`backward_warp` samples the source colours with that target-view disparity (sub-pixel);
3. disoccluded holes are filled from the background side: its edge pixel repeated, or its texture mirrored
   (:mod:`s3d.stereo.fill`).
Steps 2 and 3 are one sampling pass: a hole samples the source where its background neighbour does, so
only the one-channel disparity is filled and the colours are read once. :func:`backward_warp` alone is
differentiable and is what the trained warp model uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s3d.stereo.fill import background_source_index

ALIGN_CORNERS = False


def base_grid(b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Identity sampling grid for ``grid_sample(..., align_corners=False)``: ``-> (B, H, W, 2)``."""
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1).expand(b, h, w, 2)


def _check(image: torch.Tensor, disparity: torch.Tensor) -> None:
    if image.dim() != 4 or disparity.dim() != 4 or disparity.shape[1] != 1:
        raise ValueError(f"expected image (B, C, H, W) and disparity (B, 1, H, W), got {tuple(image.shape)}, {tuple(disparity.shape)}")
    if image.shape[0] != disparity.shape[0] or image.shape[-2:] != disparity.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} and disparity {tuple(disparity.shape)} differ in batch or size")


def sample_rows(source: torch.Tensor, x: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Read each row of ``source`` at the (fractional) columns ``x``: ``mode`` bilinear or bicubic, border padding.

    ``source (B, C, H, W)``, ``x (B, 1, H, W)`` in pixels of ``source`` -> ``(B, C, H, W)``.
    """
    b, _, h, w = source.shape
    grid = base_grid(b, h, w, source.device, source.dtype)
    gx = (x[:, 0] * 2 + 1) / w - 1  # pixel centre i sits at (2 i + 1) / W - 1 with align_corners=False
    grid = torch.stack((gx, grid[..., 1]), dim=-1)
    return F.grid_sample(source, grid, mode=mode, padding_mode="border", align_corners=ALIGN_CORNERS)


def backward_warp(source: torch.Tensor, target_disparity: torch.Tensor, direction: int = 1) -> torch.Tensor:
    """Sample the source view at ``x_target + direction * d`` (bilinear, border padding).

    ``source (B, C, H, W)``, ``target_disparity (B, 1, H, W)`` in pixels, given in the **target** view
    ``-> (B, C, H, W)``. Differentiable in both inputs.
    """
    _check(source, target_disparity)
    w = source.shape[-1]
    x = torch.arange(w, device=source.device, dtype=source.dtype)
    return sample_rows(source, x + direction * target_disparity)


def forward_disparity(disparity: torch.Tensor, direction: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Splat a source-view disparity into the target view; where several points land, the nearest wins.

    Each source pixel lands at ``x - direction * d`` and is written to the integer pixels either side
    (one where it lands exactly), so a stretched surface leaves no one-pixel cracks.

    ``(B, 1, H, W) -> (target disparity (B, 1, H, W), valid (B, 1, H, W) bool)``; invalid = disoccluded.
    """
    b, _, h, w = disparity.shape
    x = torch.arange(w, device=disparity.device, dtype=disparity.dtype).expand_as(disparity)
    landing = x - direction * disparity
    empty = torch.finfo(disparity.dtype).min
    target = torch.full_like(disparity, empty)
    for pos in (landing.floor(), landing.ceil()):
        inside = (pos >= 0) & (pos <= w - 1)
        index = pos.clamp(0, w - 1).long()
        src = torch.where(inside, disparity, torch.full_like(disparity, empty))
        target = target.scatter_reduce(-1, index, src, reduce="amax", include_self=True)
    valid = target > empty
    return torch.where(valid, target, torch.zeros_like(target)), valid


# How a disocclusion is filled from its background side (s3d.stereo.fill): its texture mirrored at the hole's
# edge, its edge pixel repeated along the row, or repeated and then averaged over SMOOTH_ROWS rows either side
# within the hole (no streaks of one colour per row where the depth is wrong: the hole reads as soft background).
FILLS = ("smooth", "stretch", "mirror")
DEFAULT_FILL = "smooth"  # measured best given the stereo teacher's disparity (README, Results)
SMOOTH_ROWS = 4


def synthesize_view(source: torch.Tensor, disparity: torch.Tensor, direction: int = 1, mode: str = "bicubic", fill: str = DEFAULT_FILL) -> torch.Tensor:
    """Render the other eye from one eye and its own (source-view) disparity.

    ``source (B, C, H, W)``, ``disparity (B, 1, H, W)`` in pixels, in the source view ``-> (B, C, H, W)``.
    Zero disparity returns the source unchanged. ``mode`` bicubic keeps a half-pixel shift as sharp as the
    source (bilinear averages two pixels there); it may overshoot the source's range slightly. ``fill``:
    a hole repeats its background's edge pixel (``stretch``), then is averaged over :data:`SMOOTH_ROWS` rows
    (``smooth``), or continues the background's texture mirrored at the hole's edge (``mirror``).
    """
    _check(source, disparity)
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got '{fill}'")
    target_disparity, valid = forward_disparity(disparity, direction)
    column = background_source_index(target_disparity, valid, mirror=fill == "mirror")  # holes read where their background neighbour reads
    x = column.to(source.dtype) + direction * target_disparity.gather(-1, column)
    out = sample_rows(source, x, mode)
    return smooth_holes(out, ~valid, SMOOTH_ROWS) if fill == "smooth" else out


def smooth_holes(image: torch.Tensor, holes: torch.Tensor, rows: int) -> torch.Tensor:
    """Each hole pixel becomes the mean of the hole pixels of its column within ``rows`` rows either side
    (the edge rows repeated beyond the frame); other pixels are kept. ``image (B, C, H, W)``, ``holes (B, 1, H, W)``
    bool ``-> (B, C, H, W)``. The sum runs in row order, as the CPU kernel's does."""
    if rows == 0 or not bool(holes.any()):
        return image
    m = holes.to(image.dtype)
    x = F.pad(image * m, (0, 0, rows, rows), mode="replicate").unfold(2, 2 * rows + 1, 1)
    n = F.pad(m, (0, 0, rows, rows), mode="replicate").unfold(2, 2 * rows + 1, 1)
    total, count = x[..., 0], n[..., 0]
    for k in range(1, 2 * rows + 1):
        total, count = total + x[..., k], count + n[..., k]
    return torch.where(holes, total / count.clamp(min=1), image)
