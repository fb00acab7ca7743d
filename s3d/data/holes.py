"""Training samples for a learned disocclusion fill from any 2D picture (issue 24; iw3's recipe).

A picture is taken as the *right* eye with a nearness map: it is warped to a left eye, and that left eye back to
the right. The pixels the left eye never saw come back as holes, and they sit where conversion makes them: on
the background side of depth edges. The picture itself is the truth for them, so every licence-OK frame or photo
is a sample, with the bundled model's or the stereo teacher's depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from s3d.stereo.fill import fill_from_background
from s3d.stereo.warp import forward_disparity, synthesize_view


@dataclass(frozen=True)
class HoleSample:
    """``warped (B, 3, H, W)``: the right eye rebuilt from the left one, its holes filled by ``fill``;
    ``holes (B, 1, H, W)`` bool: the pixels the left eye never saw; ``disparity (B, 1, H, W)``: the left view's, px,
    that rebuilt it; ``target (B, 3, H, W)``: the picture (the truth)."""

    warped: torch.Tensor
    holes: torch.Tensor
    disparity: torch.Tensor
    target: torch.Tensor


def warp_holes(right: torch.Tensor, disparity: torch.Tensor, fill: str = "stretch") -> HoleSample:
    """Forward and back: ``right (B, 3, H, W)`` in ``[0, 1]`` and its own disparity ``(B, 1, H, W)`` (px, >= 0 for
    what is in front of the screen) -> a :class:`HoleSample` whose holes are where a conversion of the left eye
    would have to invent the right one."""
    if right.dim() != 4 or right.shape[1] != 3 or disparity.shape != (right.shape[0], 1, *right.shape[-2:]):
        raise ValueError(f"expected right (B, 3, H, W) and disparity (B, 1, H, W), got {tuple(right.shape)}, {tuple(disparity.shape)}")
    left = synthesize_view(right, disparity, direction=-1, fill="stretch")
    d_left, seen = forward_disparity(disparity, -1)
    _, d_left = fill_from_background(d_left, d_left, seen, mirror=False)  # where the right eye saw nothing: its background's
    _, valid = forward_disparity(d_left, 1)
    warped = synthesize_view(left, d_left, direction=1, fill=fill)
    return HoleSample(warped, ~valid, d_left, right)
