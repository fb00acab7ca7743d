"""Wiggle animation: the eyes shown in turn, which gives depth without glasses."""

from __future__ import annotations

import torch


def wiggle_frames(left: torch.Tensor, right: torch.Tensor, steps: int = 1) -> list[torch.Tensor]:
    """Frames of a looping wiggle between the eyes.

    ``left, right (3, H, W) -> [(3, H, W), ...]``. ``steps=1`` alternates the two eyes; larger ``steps``
    adds ``steps - 1`` cross-fades each way for a smoother rock.
    """
    if left.shape != right.shape or left.dim() != 3:
        raise ValueError(f"eyes must be two (3, H, W) tensors of one shape, got {tuple(left.shape)} and {tuple(right.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ts = [i / steps for i in range(steps + 1)]
    forward = [(1 - t) * left + t * right for t in ts]
    return forward + forward[-2:0:-1]
