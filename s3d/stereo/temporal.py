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
    """Runs the depth network on key frames only and carries its depth to the frames between.

    Two savings, both off the network's cost. ``interval``: a key frame every ``interval`` frames; the frames
    between two keys take the two keys' nearness blended linearly in time (no lag on steady motion; a moving
    edge is a cross-fade at worst), never across a scene cut (the frames on both sides of a cut are keys).
    ``threshold``: a key frame whose thumbnail differs from the last estimated key's by less than this
    (mean absolute change, 0-1 scale) takes that key's nearness, at most ``max_run`` keys in a row, so a slow
    pan is still re-estimated. On Big Buck Bunny's first 30 s, ``threshold=0.005``, ``max_run=1`` skip the
    network on 42% of the frames; what ``interval`` costs in lag and flicker is measured by
    ``scripts/keyframe_measure.py`` (README, Speed). Each batch's last frame is a key, so no frame waits for
    the next batch: batches of a multiple of ``interval`` frames keep the keys evenly spaced. Call
    :meth:`reset` between videos.
    """

    CARRIES = ("blend", "hold")

    def __init__(self, threshold: float = 0.005, max_run: int = 1, interval: int = 1, scene_cut: float = 0.12, carry: str = "blend"):
        if threshold < 0 or max_run < 1 or interval < 1:
            raise ValueError(f"depth reuse needs threshold >= 0, max_run >= 1 and interval >= 1, got {threshold}, {max_run} and {interval}")
        if carry not in self.CARRIES:
            raise ValueError(f"carry must be one of {', '.join(self.CARRIES)}, got '{carry}'")
        self.threshold, self.max_run, self.interval, self.scene_cut = threshold, max_run, interval, scene_cut
        self.carry = carry  # between key frames: blend the two keys, or hold the last one (measured against each other)
        self.reused = self.computed = 0
        self.reset()

    def reset(self) -> None:
        self._thumb: torch.Tensor | None = None  # the last estimated key's thumbnail
        self._near: torch.Tensor | None = None  # the last key's nearness (1, 1, H, W)
        self._last: torch.Tensor | None = None  # the last frame's thumbnail (cuts)
        self._run = 0
        self._count = 0  # frames since the reset

    def _keys(self, thumbs: torch.Tensor) -> list[bool]:
        """Which frames of the batch are key frames."""
        b = thumbs.shape[0]
        before = torch.cat([self._last if self._last is not None else thumbs[:1], thumbs[:-1]])
        cut = is_scene_cut(before, thumbs, self.scene_cut).tolist()
        cut[0] = cut[0] or self._last is None  # nothing before it: a start
        keys = []
        for i in range(b):
            after_cut = i + 1 < b and cut[i + 1]
            keys.append(cut[i] or after_cut or i == b - 1 or (self._count + i + 1) % self.interval == 0)
        return keys

    def __call__(self, depth, image: torch.Tensor) -> torch.Tensor:
        """``depth`` ``(b, 3, H, W) -> (b, 1, H, W)`` run on the key frames of ``image (B, 3, H, W)`` (consecutive
        frames) only -> ``(B, 1, H, W)``."""
        if self._near is not None and self._near.shape[-2:] != image.shape[-2:]:
            self.reset()  # another size: another video
        thumbs = thumbnail(image)
        keys = [i for i, k in enumerate(self._keys(thumbs)) if k]
        run: list[int] = []  # the keys the network runs on now
        source: dict[int, int] = {}  # key -> index into run, or -1 = the last estimated key's nearness
        for i in keys:
            still = (
                self._thumb is not None
                and self._run < self.max_run
                and float((thumbs[i] - self._thumb).abs().mean()) < self.threshold
                and (run or self._near is not None)
            )
            if still:
                self._run += 1
            else:
                run.append(i)
                self._thumb, self._run = thumbs[i], 0
            source[i] = len(run) - 1
        computed = depth(image[run]) if run else None
        key_near = {i: (computed[k : k + 1] if k >= 0 else self._near) for i, k in source.items()}
        out, before, at = [], self._near, -1  # the key before: its nearness and its index in this batch
        for i in range(image.shape[0]):
            if i in key_near:
                out.append(key_near[i])
                before, at = key_near[i], i
                continue
            after = next(k for k in keys if k > i)
            w = (i - at) / (after - at) if self.carry == "blend" else 0.0
            out.append(torch.lerp(before, key_near[after], w))
        self._near, self._last = key_near[keys[-1]], thumbs[-1:]
        self._count += image.shape[0]
        self.computed += len(run)
        self.reused += image.shape[0] - len(run)
        return torch.cat(out)
