"""Comfort controls (s3d.stereo.comfort): foreground scale and edge dilation, on their own and in the pipeline."""

from __future__ import annotations

import pytest
import torch

from s3d.pipeline import StereoPipeline, StereoSettings
from s3d.stereo.comfort import dilate_edges, foreground_scale


class _Step:
    """A depth stand-in: a near block (nearness 1) in the middle of a far frame."""

    resolution = None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        n = torch.zeros(b, 1, h, w)
        n[..., h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = 1
        return n


def test_foreground_scale_compresses_the_near_range_and_keeps_the_ends():
    n = torch.linspace(0, 1, 101).view(1, 1, 1, -1)
    assert torch.equal(foreground_scale(n, 0.0), n)
    out = foreground_scale(n, 1.0)
    assert out[..., 0] == 0 and out[..., -1] == 1 and (out[..., 1:] >= out[..., :-1]).all()  # monotone, same ends
    assert float(out[..., -1] - out[..., -11]) < 0.5 * 0.1  # the nearest tenth of the range squeezed to under half
    assert float(out[..., 10] - out[..., 0]) > 0.1  # the far range stretched
    x = torch.rand(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: foreground_scale(t, 0.7), (x,))
    with pytest.raises(ValueError, match=">= 0"):
        foreground_scale(n, -1.0)


def test_edge_dilation_grows_near_things_along_rows_only():
    n = torch.zeros(1, 1, 9, 20)
    n[..., 3:6, 8:12] = 1
    out = dilate_edges(n, 2)
    assert torch.equal(dilate_edges(n, 0), n)
    assert out[0, 0, 4].nonzero().flatten().tolist() == list(range(6, 14))  # 2 px more on each side
    assert out[0, 0, 2].sum() == 0 and out[0, 0, 6].sum() == 0  # not above or below
    with pytest.raises(ValueError, match=">= 0 pixels"):
        dilate_edges(n, -1)


def test_comfort_reaches_both_synthesis_paths_alike():
    frames = torch.randint(0, 256, (2, 32, 48, 3), dtype=torch.uint8)
    outs = {}
    for dilation in (0, 3):
        s = StereoSettings(edge_dilation=dilation, foreground_scale=0.5, divergence=8.0)
        p = StereoPipeline(_Step(), s, torch.device("cpu"))
        fast = p(frames)  # the uint8 kernel path
        plain = p.pack(*p.eyes(frames), even=True)  # the float torch path
        assert (fast.int() - plain.int()).abs().max() <= 1
        outs[dilation] = fast
    assert not torch.equal(outs[0], outs[3])  # the dilation moves the block's edges in the rendered eye
    assert torch.equal(outs[0][:, :, :48], outs[3][:, :, :48])  # the input eye untouched


def test_auto_convergence_follows_the_subject_smoothly_and_resets_at_cuts():
    from s3d.stereo.comfort import AutoConvergence, subject_nearness

    near = torch.zeros(6, 1, 16, 16)
    near[..., 4:12, 4:12] = torch.tensor([0.2, 0.2, 0.8, 0.8, 0.8, 0.8]).view(6, 1, 1, 1)  # the subject comes closer
    assert torch.allclose(subject_nearness(near), torch.tensor([0.2, 0.2, 0.8, 0.8, 0.8, 0.8]))
    image = torch.full((6, 3, 16, 16), 0.5)
    follow = AutoConvergence(smoothing=0.5)
    planes = follow(near, image)
    assert planes[:2] == [pytest.approx(0.2)] * 2 and planes[2] == pytest.approx(0.5)  # halfway: smoothed, not a jump
    assert planes[2] < planes[3] < planes[4] < planes[5] < 0.8
    cut = image.clone()
    cut[3:] = 0.0  # a scene cut before frame 3: the plane starts afresh there
    after_cut = AutoConvergence(smoothing=0.5)(near, cut)
    assert after_cut[3] == pytest.approx(0.8)


def test_auto_convergence_in_a_conversion_keeps_the_subject_on_the_screen(tmp_path):
    frames = torch.randint(0, 256, (2, 32, 48, 3), dtype=torch.uint8)
    from s3d.stereo.comfort import AutoConvergence

    fixed = StereoPipeline(_Step(), StereoSettings(convergence=0.0, divergence=8.0), torch.device("cpu"))(frames)
    follow = StereoPipeline(_Step(), StereoSettings(convergence=0.0, divergence=8.0), torch.device("cpu"), convergence=AutoConvergence(0.0))
    moved = follow(frames)
    # the near block is the subject: with its plane at its nearness it has no disparity, so the block's pixels
    # in the rendered eye are the input's; with convergence 0 it is shifted
    block = (slice(None), slice(8, 24), slice(48 + 18, 48 + 30))
    inp = (slice(None), slice(8, 24), slice(18, 30))
    assert torch.equal(moved[block], frames[inp]) and not torch.equal(fixed[block], frames[inp])


def test_convert_with_auto_convergence(tmp_path):
    import av
    from conftest import make_video

    from s3d.config import compose
    from s3d.convert import convert

    clip = make_video(tmp_path / "c.mp4", width=96, height=64, frames=10)
    outs = {}
    for on in ("false", "true"):
        out = tmp_path / f"o_{on}.mkv"
        convert(compose("convert", [f"input={clip}", f"output={out}", "depth=tiny_random", "quiet=true", "segment_frames=4", f"comfort.auto_convergence={on}"]))
        with av.open(str(out)) as c:
            outs[on] = torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]).int()
    assert outs["true"].shape == outs["false"].shape == (10, 64, 192, 3)
    assert (outs["true"][..., 96:, :] - outs["false"][..., 96:, :]).abs().float().mean() > 1  # the rendered eye moved
