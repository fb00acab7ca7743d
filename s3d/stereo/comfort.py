"""Comfort controls on the nearness before it becomes disparity: small pure functions, off by default.

- :func:`foreground_scale` compresses the near range (``1 - (1 - n) ** (1 + s)``): the nearest things come
  less far out of the screen, the far range keeps its relief. ``s = 0`` is the identity.
- :func:`dilate_edges` grows the near side of every depth edge by ``k`` pixels (a grey dilation, a max
  filter), so the warp's tearing at an object's outline falls on the background rather than on the object.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(nearness: torch.Tensor) -> None:
    if nearness.dim() != 4 or nearness.shape[1] != 1:
        raise ValueError(f"nearness must be (B, 1, H, W), got {tuple(nearness.shape)}")


def foreground_scale(nearness: torch.Tensor, scale: float) -> torch.Tensor:
    """``(B, 1, H, W)`` in ``[0, 1]`` -> the same with the near range compressed by ``scale >= 0``; 0 and 1 stay."""
    _check(nearness)
    if scale < 0:
        raise ValueError(f"foreground scale must be >= 0, got {scale}")
    if scale == 0:
        return nearness
    return 1 - (1 - nearness.clamp(0, 1)) ** (1 + scale)


def dilate_edges(nearness: torch.Tensor, pixels: int) -> torch.Tensor:
    """``(B, 1, H, W) -> (B, 1, H, W)``: each pixel takes the largest nearness within ``pixels`` of it along its
    row (the warp is horizontal, so only horizontal edges of objects tear)."""
    _check(nearness)
    if pixels < 0:
        raise ValueError(f"edge dilation must be >= 0 pixels, got {pixels}")
    if pixels == 0:
        return nearness
    return F.max_pool2d(nearness, kernel_size=(1, 2 * pixels + 1), stride=1, padding=(0, pixels))


def shape_nearness(nearness: torch.Tensor, scale: float, pixels: int) -> torch.Tensor:
    """Both controls, in the order that keeps dilation's edges where the scaled nearness has them."""
    return dilate_edges(foreground_scale(nearness, scale), pixels)


def subject_nearness(nearness: torch.Tensor) -> torch.Tensor:
    """The main subject's nearness per frame: the median of the frame's central half (width and height).
    ``(B, 1, H, W) -> (B,)``."""
    _check(nearness)
    h, w = nearness.shape[-2:]
    centre = nearness[..., h // 4 : h - h // 4, w // 4 : w - w // 4]
    return centre.flatten(1).median(dim=1).values


class AutoConvergence:
    """The screen plane follows the main subject (:func:`subject_nearness`), smoothed over time (the past's
    weight ``smoothing``) and reset at scene cuts, so the subject sits near the screen, where the eyes are most
    at ease. Call :meth:`reset` between videos."""

    def __init__(self, smoothing: float = 0.9, scene_cut: float = 0.12):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"auto convergence smoothing must be in [0, 1), got {smoothing}")
        self.smoothing, self.scene_cut = smoothing, scene_cut
        self.reset()

    def reset(self) -> None:
        self._plane: float | None = None
        self._thumb: torch.Tensor | None = None

    def __call__(self, nearness: torch.Tensor, image: torch.Tensor) -> list[float]:
        """Consecutive frames' ``nearness (B, 1, H, W)`` and ``image (B, 3, H, W)`` -> each frame's convergence."""
        from s3d.stereo.temporal import is_scene_cut, thumbnail

        subjects, thumbs, planes = subject_nearness(nearness).tolist(), thumbnail(image), []
        for subject, thumb in zip(subjects, thumbs):
            cut = self._thumb is None or bool(is_scene_cut(self._thumb[None], thumb[None], self.scene_cut))
            self._plane = subject if cut or self._plane is None else self.smoothing * self._plane + (1 - self.smoothing) * subject
            self._thumb = thumb
            planes.append(min(1.0, max(0.0, self._plane)))
        return planes
