"""Temporal stability: depth smoothed across frames, reset at scene cuts.

Each frame's depth is estimated alone and normalised alone, so on a still shot it shimmers from frame to
frame, which reads as wobbling 3D. An exponential moving average of nearness removes that, but on moving
things it would leave a trail of old depth, and across a cut it would mix two shots. So the past's weight
is lowered per pixel where the image changed (:func:`motion_gate`) and dropped to zero when the whole
frame changed (:func:`is_scene_cut`). Both look at small grey thumbnails, so they cost little next to
the depth network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def thumbnail(image: torch.Tensor, size: tuple[int, int] = (36, 64)) -> torch.Tensor:
    """Grey, area-averaged: ``(B, 3, H, W) -> (B, 1, h, w)``."""
    return F.adaptive_avg_pool2d(image.mean(1, keepdim=True), size)


def is_scene_cut(prev_thumb: torch.Tensor, thumb: torch.Tensor, threshold: float) -> torch.Tensor:
    """A cut where the mean absolute change of the thumbnail exceeds ``threshold`` (0-1 scale).

    ``(B, 1, h, w) x 2 -> (B,) bool``.
    """
    return (thumb - prev_thumb).abs().flatten(1).mean(1) > threshold


def motion_gate(prev_thumb: torch.Tensor, thumb: torch.Tensor, motion: float, size: tuple[int, int]) -> torch.Tensor:
    """How much of the past to keep per pixel: 1 where nothing moved, 0 where the change reaches ``motion``.

    ``(B, 1, h, w) x 2 -> (B, 1, H, W)`` in ``[0, 1]`` at ``size = (H, W)``.
    """
    keep = (1 - (thumb - prev_thumb).abs() / max(motion, 1e-6)).clamp(0, 1)
    return F.interpolate(keep, size=size, mode="bilinear", align_corners=False)


def ema_step(prev: torch.Tensor, current: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
    """``weight * prev + (1 - weight) * current``; ``weight`` broadcasts (a number or a per-pixel map)."""
    return current + (prev - current) * weight


class TemporalSmoother:
    """Smooths a stream of nearness maps, batch after batch, in frame order.

    ``smoothing`` is the weight of the past on a still pixel (0 = off, 0.8 = strong); ``scene_cut`` the
    mean thumbnail change (0-1) that starts afresh; ``motion`` the per-pixel change at which the past is
    ignored. Call :meth:`reset` between videos.
    """

    def __init__(self, smoothing: float = 0.5, scene_cut: float = 0.12, motion: float = 0.08):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"temporal smoothing must be in [0, 1), got {smoothing}")
        self.smoothing, self.scene_cut, self.motion = smoothing, scene_cut, motion
        self.cuts = 0
        self.reset()

    def reset(self) -> None:
        self._prev: torch.Tensor | None = None
        self._prev_thumb: torch.Tensor | None = None

    def __call__(self, nearness: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``nearness (B, 1, H, W)``, ``image (B, 3, H, W)``, consecutive frames -> smoothed ``(B, 1, H, W)``."""
        if nearness.shape[0] != image.shape[0] or nearness.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"nearness {tuple(nearness.shape)} and image {tuple(image.shape)} differ in batch or size")
        if self.smoothing == 0:
            return nearness
        thumbs = thumbnail(image)
        out = []
        for i in range(nearness.shape[0]):
            n, t = nearness[i : i + 1], thumbs[i : i + 1]
            if self._prev is not None and self._prev.shape == n.shape:
                if bool(is_scene_cut(self._prev_thumb, t, self.scene_cut)):
                    self.cuts += 1
                else:
                    n = ema_step(self._prev, n, self.smoothing * motion_gate(self._prev_thumb, t, self.motion, n.shape[-2:]))
            self._prev, self._prev_thumb = n, t
            out.append(n)
        return torch.cat(out)


class DepthReuse:
    """Runs the depth network only on frames that changed since the last frame it ran on.

    A frame whose thumbnail differs from that key frame's by less than ``threshold`` (mean absolute change,
    0-1 scale) takes the key frame's nearness, at most ``max_run`` frames in a row, so a slow pan is still
    re-estimated every ``max_run + 1`` frames. On Big Buck Bunny's first 30 s, ``threshold=0.005``,
    ``max_run=1`` skips the network on 42% of the frames (README, Speed). Call :meth:`reset` between videos.
    """

    def __init__(self, threshold: float = 0.005, max_run: int = 1):
        if threshold < 0 or max_run < 1:
            raise ValueError(f"depth reuse needs threshold >= 0 and max_run >= 1, got {threshold} and {max_run}")
        self.threshold, self.max_run = threshold, max_run
        self.reused = self.computed = 0
        self.reset()

    def reset(self) -> None:
        self._thumb: torch.Tensor | None = None
        self._near: torch.Tensor | None = None
        self._run = 0

    def __call__(self, depth, image: torch.Tensor) -> torch.Tensor:
        """``depth`` ``(b, 3, H, W) -> (b, 1, H, W)`` run on the key frames of ``image (B, 3, H, W)`` (consecutive
        frames) only -> ``(B, 1, H, W)``."""
        thumbs = thumbnail(image)
        keys: list[int] = []
        source: list[int] = []  # per frame: index into the key frames computed now, or -1 = the last key before
        for i in range(image.shape[0]):
            still = (
                self._thumb is not None
                and self._run < self.max_run
                and self._thumb.shape == thumbs[i].shape
                and float((thumbs[i] - self._thumb).abs().mean()) < self.threshold
                and (keys or (self._near is not None and self._near.shape[-2:] == image.shape[-2:]))
            )
            if still:
                self._run += 1
            else:
                keys.append(i)
                self._thumb, self._run = thumbs[i], 0
            source.append(len(keys) - 1)
        computed = depth(image[keys]) if keys else None
        out = [computed[k : k + 1] if k >= 0 else self._near for k in source]
        if computed is not None:
            self._near = computed[-1:]
        self.computed += len(keys)
        self.reused += image.shape[0] - len(keys)
        return torch.cat(out)
