"""Occlusion filling: holes take their content from the background side of the hole."""

from __future__ import annotations

import torch


def _last_valid_index(valid: torch.Tensor) -> torch.Tensor:
    """Index of the nearest valid pixel at or left of each pixel, -1 where none.

    ``(B, 1, H, W) bool -> (B, 1, H, W) int32``.
    """
    w = valid.shape[-1]
    idx = torch.arange(w, device=valid.device, dtype=torch.int32).expand_as(valid)  # int32: several times faster than int64 here
    return torch.where(valid, idx, -1).cummax(dim=-1).values


def _nearest_valid_indices(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the nearest valid pixel to the left and to the right (-1 where there is none)."""
    w = valid.shape[-1]
    left = _last_valid_index(valid)
    right_flipped = _last_valid_index(valid.flip(-1))
    right = torch.where(right_flipped >= 0, w - 1 - right_flipped, right_flipped).flip(-1)
    return left, right


def background_source_index(disparity: torch.Tensor, valid: torch.Tensor, mirror: bool = True, tolerance: float = 0.5) -> torch.Tensor:
    """For each pixel, the column it takes its content from: itself where valid, else from the background
    side of its hole (its nearest valid row neighbour with the smaller disparity). A row with no valid
    pixel keeps its own.

    With ``mirror`` the hole continues the background's texture reflected at the hole's edge: the hole pixel
    ``k`` columns from its background neighbour ``n`` reads ``k - 1`` columns beyond ``n``, so a hole is not a
    streak of one colour. Where that column is invalid, outside the image, or nearer than the background
    (disparity above ``n``'s by more than ``tolerance`` px: foreground behind a thin background strip),
    the hole pixel reads ``n`` itself.

    ``disparity (B, 1, H, W)``, ``valid (B, 1, H, W) bool`` ``-> (B, 1, H, W) long``.
    """
    if valid.dtype != torch.bool:
        raise ValueError("valid must be a bool mask")
    w = valid.shape[-1]
    left, right = _nearest_valid_indices(valid)
    has_left, has_right = left >= 0, right >= 0
    left_c, right_c = left.clamp(min=0), right.clamp(min=0)
    take_left = has_left & (~has_right | (disparity.gather(-1, left_c.long()) <= disparity.gather(-1, right_c.long())))
    source = torch.where(take_left, left_c, right_c)
    own = torch.arange(w, device=valid.device, dtype=torch.int32).expand_as(source)
    if mirror:
        reflected = torch.where(take_left, 2 * source - own + 1, 2 * source - own - 1)
        inside = (reflected >= 0) & (reflected <= w - 1)
        reflected_c = reflected.clamp(0, w - 1).long()
        usable_reflection = inside & valid.gather(-1, reflected_c)
        usable_reflection &= disparity.gather(-1, reflected_c) <= disparity.gather(-1, source.long()) + tolerance
        source = torch.where(usable_reflection, reflected, source)
    usable = ~valid & (has_left | has_right)
    return torch.where(usable, source, own).long()


def fill_from_background(image: torch.Tensor, disparity: torch.Tensor, valid: torch.Tensor, mirror: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill invalid pixels row by row from the background side of each hole.

    A disoccluded hole lies between a foreground and a background pixel; of its two valid row
    neighbours the one with the smaller disparity is background, so the hole takes its content from
    that side (the foreground never smears into the background), mirrored as
    :func:`background_source_index` describes unless ``mirror`` is false.

    ``image (B, C, H, W)``, ``disparity (B, 1, H, W)``, ``valid (B, 1, H, W) bool``
    ``-> (filled image (B, C, H, W), filled disparity (B, 1, H, W))``.
    A row with no valid pixel is left as it is.
    """
    source = background_source_index(disparity, valid, mirror)
    filled_image = image.gather(-1, source.expand(-1, image.shape[1], -1, -1))
    filled_disparity = disparity.gather(-1, source)
    return filled_image, filled_disparity
