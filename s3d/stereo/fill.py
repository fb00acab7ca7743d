"""Occlusion filling: holes take the colour of their background-side neighbour."""

from __future__ import annotations

import torch


def _last_valid_index(valid: torch.Tensor) -> torch.Tensor:
    """Index of the nearest valid pixel at or left of each pixel, -1 where none.

    ``(B, 1, H, W) bool -> (B, 1, H, W) long``.
    """
    w = valid.shape[-1]
    idx = torch.arange(w, device=valid.device).expand_as(valid)
    idx = torch.where(valid, idx, torch.full_like(idx, -1))
    return idx.cummax(dim=-1).values


def _nearest_valid_indices(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the nearest valid pixel to the left and to the right (-1 where there is none)."""
    w = valid.shape[-1]
    left = _last_valid_index(valid)
    right_flipped = _last_valid_index(valid.flip(-1))
    right = torch.where(right_flipped >= 0, w - 1 - right_flipped, right_flipped).flip(-1)
    return left, right


def fill_from_background(
    image: torch.Tensor, disparity: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill invalid pixels row by row from the nearest valid pixel on the background side.

    A disoccluded hole lies between a foreground and a background pixel; of its two valid row
    neighbours the one with the smaller disparity is background, so the hole takes that one's colour
    and disparity (the foreground never smears into the background).

    ``image (B, C, H, W)``, ``disparity (B, 1, H, W)``, ``valid (B, 1, H, W) bool``
    ``-> (filled image (B, C, H, W), filled disparity (B, 1, H, W))``.
    A row with no valid pixel is left as it is.
    """
    if valid.dtype != torch.bool:
        raise ValueError("valid must be a bool mask")
    left, right = _nearest_valid_indices(valid)
    has_left, has_right = left >= 0, right >= 0
    left_c, right_c = left.clamp(min=0), right.clamp(min=0)
    d_left = disparity.gather(-1, left_c)
    d_right = disparity.gather(-1, right_c)
    take_left = has_left & (~has_right | (d_left <= d_right))
    source = torch.where(take_left, left_c, right_c)
    usable = ~valid & (has_left | has_right)
    source = torch.where(usable, source, torch.arange(valid.shape[-1], device=valid.device).expand_as(source))
    filled_image = image.gather(-1, source.expand(-1, image.shape[1], -1, -1))
    filled_disparity = disparity.gather(-1, source)
    return filled_image, filled_disparity
