"""Temporal smoothing of depth (s3d.stereo.temporal)."""

from __future__ import annotations

import pytest
import torch

from s3d.stereo.temporal import DepthReuse, TemporalSmoother, ema_step, is_scene_cut, thumbnail


def _still(frames: int = 8, h: int = 36, w: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, h, w, generator=g).expand(frames, -1, -1, -1).clone()
    base = torch.linspace(0, 1, w).expand(frames, 1, h, w)
    jitter = (torch.rand(frames, 1, h, w, generator=g) - 0.5) * 0.2
    return image, (base + jitter).clamp(0, 1)


def _flicker(near: torch.Tensor) -> float:
    return float((near[1:] - near[:-1]).abs().mean())


def test_still_shot_flickers_less():
    image, near = _still()
    smoothed = TemporalSmoother(smoothing=0.7)(near, image)
    assert _flicker(smoothed) < 0.5 * _flicker(near)
    assert torch.equal(smoothed[0], near[0])  # nothing to smooth with yet


def test_off_returns_input_and_bad_weight_is_refused():
    image, near = _still()
    assert torch.equal(TemporalSmoother(smoothing=0.0)(near, image), near)
    with pytest.raises(ValueError, match="smoothing"):
        TemporalSmoother(smoothing=1.0)


def test_scene_cut_starts_afresh():
    image, near = _still(4)
    other, other_near = _still(4, seed=1)
    frames, nears = torch.cat((image, 1 - other)), torch.cat((near, other_near))
    s = TemporalSmoother(smoothing=0.7, scene_cut=0.1)
    out = s(nears, frames)
    assert s.cuts == 1
    torch.testing.assert_close(out[4], nears[4])  # the first frame after the cut is its own depth
    assert not torch.equal(out[5], nears[5])  # and smoothing goes on within the new shot


def test_moving_region_keeps_current_depth():
    image, near = _still(2)
    dark = image[1, :, :, :32].mean(0) < 0.5
    image[1, :, :, :32] = dark.float()  # every pixel of the left half changes by 0.5 or more; not a cut
    out = TemporalSmoother(smoothing=0.7, scene_cut=0.9, motion=0.05)(near, image)
    torch.testing.assert_close(out[1, :, 4:-4, 4:24], near[1, :, 4:-4, 4:24])  # no trail where it moved
    assert (out[1, :, :, 44:] - near[1, :, :, 44:]).abs().mean() > 0.01  # smoothed where still


def test_batches_carry_state_like_one_stream():
    image, near = _still(8)
    whole = TemporalSmoother(smoothing=0.6)(near, image)
    s = TemporalSmoother(smoothing=0.6)
    parts = torch.cat((s(near[:3], image[:3]), s(near[3:], image[3:])))
    torch.testing.assert_close(parts, whole)


def test_pure_functions():
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    torch.testing.assert_close(ema_step(a, b, 0.25), torch.full_like(a, 0.75))
    t = thumbnail(torch.rand(2, 3, 72, 128))
    assert t.shape == (2, 1, 36, 64)
    assert is_scene_cut(t, 1 - t, 0.1).all() and not is_scene_cut(t, t, 0.1).any()


class _Counting:
    """A depth stand-in whose nearness is unique per call and frame, counting the frames it sees."""

    def __init__(self):
        self.frames, self.calls = 0, 0

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = torch.stack([torch.full((1, *image.shape[-2:]), float(self.frames + i)) for i in range(image.shape[0])])
        self.frames += image.shape[0]
        return out


def test_depth_reuse_skips_still_frames_at_most_max_run_in_a_row():
    image, _ = _still(frames=6)
    depth, reuse = _Counting(), DepthReuse(threshold=0.01, max_run=1)
    near = reuse(depth, image)
    assert depth.frames == 3 and (reuse.computed, reuse.reused) == (3, 3)
    assert near[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]  # each key frame's depth is taken by the one after it
    longer = DepthReuse(threshold=0.01, max_run=2)
    assert longer(_Counting(), image)[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1]


def test_depth_reuse_runs_the_network_on_every_changed_frame():
    g = torch.Generator().manual_seed(3)
    image = torch.rand(5, 3, 36, 64, generator=g)  # every frame different
    depth = _Counting()
    near = DepthReuse(threshold=0.01, max_run=4)(depth, image)
    assert depth.frames == 5 and near[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_depth_reuse_carries_across_batches_until_reset():
    image, _ = _still(frames=4)
    depth, reuse = _Counting(), DepthReuse(threshold=0.01, max_run=1)
    first = reuse(depth, image[:1])
    second = reuse(depth, image[1:2])  # still: takes the last batch's key frame
    assert depth.frames == 1 and torch.equal(first, second)
    reuse.reset()  # a new video or segment: nothing carries over
    reuse(depth, image[2:3])
    assert depth.frames == 2
    with pytest.raises(ValueError, match="max_run >= 1"):
        DepthReuse(0.01, max_run=0)


def _panning(frames: int, h: int = 36, w: int = 64, seed: int = 0) -> torch.Tensor:
    """A slow pan: each frame differs from the last (more than reuse's threshold), never by a cut."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.rand(1, 3, h, w + frames * 2, generator=g)
    wide = torch.nn.functional.avg_pool2d(wide, 3, 1, 1)
    return torch.cat([wide[..., 2 * i : 2 * i + w] for i in range(frames)])


def test_keyframes_run_the_network_every_interval_and_blend_between():
    image = _panning(8)
    depth, keys = _Counting(), DepthReuse(threshold=0.0, max_run=1, interval=2, scene_cut=0.5)
    near = torch.cat([keys(depth, image[:4]), keys(depth, image[4:])])
    # keys: frame 0 (the start), then every 2nd frame, each batch ending on one: 0, 1, 3, 5, 7
    assert depth.frames == 5 and (keys.computed, keys.reused) == (5, 3)
    assert near[:, 0, 0, 0].tolist() == [0, 1, 1.5, 2, 2.5, 3, 3.5, 4]  # between two keys: linear in time


def test_keyframes_never_blend_across_a_cut():
    shot, other = _panning(4), 0.3 * _panning(4, seed=1)  # a darker shot: a cut
    depth, keys = _Counting(), DepthReuse(threshold=0.0, max_run=1, interval=4, scene_cut=0.1)
    near = keys(depth, torch.cat([shot, other]))
    # keys: 0 (start), 3 (the last frame before the cut), 4 (the cut), 7 (the batch's end)
    assert near[:, 0, 0, 0].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 2, 2 + 1 / 3, 2 + 2 / 3, 3])
    assert depth.frames == 4


def test_keyframes_of_one_are_the_plain_reuse_and_batches_become_multiples():
    image, _ = _still(frames=6)
    a, b = DepthReuse(0.01, 1), DepthReuse(0.01, 1, interval=1, scene_cut=0.12)
    assert torch.equal(a(_Counting(), image), b(_Counting(), image))
    with pytest.raises(ValueError, match="interval >= 1"):
        DepthReuse(0.01, 1, interval=0)
