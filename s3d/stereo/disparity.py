"""Nearness -> disparity (see :mod:`s3d.stereo` for the conventions)."""

from __future__ import annotations

import torch


def nearness_to_disparity(nearness: torch.Tensor, width: int, divergence: float, convergence: float) -> torch.Tensor:
    """Map normalised nearness to disparity in pixels.

    ``(B, 1, H, W) -> (B, 1, H, W)``.

    Args:
        nearness: in ``[0, 1]``, larger = nearer.
        width: width in pixels of the frame the disparity applies to.
        divergence: 3D strength, the disparity range between the farthest (nearness 0) and the nearest
            (nearness 1) point, in percent of ``width``.
        convergence: the nearness that sits on the screen plane (zero disparity), in ``[0, 1]``:
            0 puts everything in front of the screen, 1 everything behind it.
    """
    if nearness.dim() != 4 or nearness.shape[1] != 1:
        raise ValueError(f"nearness must be (B, 1, H, W), got {tuple(nearness.shape)}")
    if not 0.0 <= convergence <= 1.0:
        raise ValueError(f"convergence must be in [0, 1], got {convergence}")
    if divergence < 0:
        raise ValueError(f"divergence must be >= 0, got {divergence}")
    return (nearness - convergence) * (divergence / 100.0 * width)
