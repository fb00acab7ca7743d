"""The conversion pipeline's fast paths and speed options give the same pictures as the plain path."""

from __future__ import annotations

import av
import pytest
import torch
from conftest import make_video

from s3d.config import compose
from s3d.convert import convert, depth_backend
from s3d.depth import accelerate, build_depth
from s3d.errors import S3DError
from s3d.pipeline import StereoPipeline, StereoSettings
from s3d.stereo.kernel import HAVE_NUMBA
from s3d.stereo.temporal import TemporalSmoother


def cuda(test):
    """A CUDA test: selected by ``pytest -m cuda`` (scripts/gpu_check.sh), skipped without a GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))


def _depth():
    return build_depth(compose("convert", ["depth=tiny_random"]).depth)


@pytest.mark.parametrize("layout", ["full_sbs", "full_ou", "full_cross"])
@pytest.mark.parametrize("eye", ["left", "right"])
def test_uint8_fast_path_matches_float_packing(layout: str, eye: str):
    frames = torch.randint(0, 256, (2, 32, 48, 3), dtype=torch.uint8)
    p = StereoPipeline(_depth(), StereoSettings(layout=layout, eye=eye), torch.device("cpu"))
    fast = p(frames)
    plain = p.pack(*p.eyes(frames), even=True)
    assert fast.shape == plain.shape and fast.dtype == torch.uint8
    # on the CPU the numba kernel renders the other eye: the same bytes as the float path (tests/test_kernel.py)
    assert (fast.int() - plain.int()).abs().max() <= (0 if HAVE_NUMBA else 1)
    # the input eye is passed through bit for bit
    first, second = (fast[:, :, :48], fast[:, :, 48:]) if layout != "full_ou" else (fast[:, :32], fast[:, 32:])
    left, right = (second, first) if layout == "full_cross" else (first, second)  # cross-eyed: the right eye first
    assert torch.equal(left if eye == "left" else right, frames)


def test_odd_frames_take_the_padding_path():
    frames = torch.randint(0, 256, (1, 33, 47, 3), dtype=torch.uint8)
    out = StereoPipeline(_depth(), StereoSettings(), torch.device("cpu"))(frames)
    assert out.shape == (1, 34, 94, 3)


def test_pipeline_smooths_depth_across_batches():
    frames = torch.randint(0, 256, (1, 32, 48, 3), dtype=torch.uint8).expand(4, -1, -1, -1).contiguous()
    noisy = _depth()
    calls = iter(range(100))

    class Jittery(torch.nn.Module):
        def forward(self, image):
            g = torch.Generator().manual_seed(next(calls))
            return (noisy(image) + 0.2 * torch.rand(image.shape[0], 1, *image.shape[-2:], generator=g)).clamp(0, 1)

    s = StereoSettings()
    plain = StereoPipeline(Jittery(), s, torch.device("cpu"))
    smooth = StereoPipeline(Jittery(), s, torch.device("cpu"), TemporalSmoother(0.7))
    image = frames.permute(0, 3, 1, 2).float() / 255
    a = torch.cat([plain.nearness(image[i : i + 2]) for i in (0, 2)])
    calls = iter(range(100))
    b = torch.cat([smooth.nearness(image[i : i + 2]) for i in (0, 2)])
    assert (b[1:] - b[:-1]).abs().mean() < 0.6 * (a[1:] - a[:-1]).abs().mean()


def test_precision_options_on_cpu():
    x = torch.rand(1, 3, 64, 96)
    ref = _depth()(x)
    fast = accelerate(_depth(), torch.device("cpu"), "bf16", channels_last=True)(x)
    assert fast.dtype == torch.float32 and (fast - ref).abs().mean() < 0.05
    with pytest.raises(S3DError, match="precision"):
        accelerate(_depth(), torch.device("cpu"), "fp8")


def test_convert_video_with_temporal_smoothing_off_and_on(tmp_path):
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=6)
    for smoothing in (0.0, 0.6):
        out = tmp_path / f"o{smoothing}.mkv"
        convert(compose("convert", [f"input={clip}", f"output={out}", "depth=tiny_random", "quiet=true", f"temporal.smoothing={smoothing}"]))
        with av.open(str(out)) as c:
            assert c.streams.video[0].frames in (0, 6) and sum(1 for _ in c.decode(video=0)) == 6


@cuda
def test_cuda_fp16_compile_pinned(tmp_path):
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=6)
    out = tmp_path / "o.mkv"
    convert(compose("convert", [f"input={clip}", f"output={out}", "depth=tiny_random", "quiet=true", "device=cuda", "precision=fp16", "compile=true"]))
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


@cuda
def test_cuda_keeps_depth_anything_at_518_in_fp16_on_every_frame(tmp_path):
    from s3d.depth.depth_anything import write_random_weights
    from s3d.pipeline import select_device

    weights = write_random_weights(tmp_path / "da.safetensors")
    cfg = compose("convert", ["depth=depth_anything_v2_small", f"depth.weights={weights}", "device=cuda"])
    depth = depth_backend(cfg, select_device(cfg.device))
    assert depth.resolution == 518 and depth.keyframe_interval == 1 and depth.autocast_dtype == torch.float16
    clip = make_video(tmp_path / "c.mp4", width=640, height=360, frames=8)
    out = tmp_path / "o.mkv"
    convert(compose("convert", [f"input={clip}", f"output={out}", f"depth.prefer.weights={weights}", "quiet=true", "device=cuda", "batch_size=4"]))
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8


def test_on_the_cpu_depth_anything_runs_at_its_cpu_settings(tmp_path):
    from s3d.depth.base import cpu_has_bf16
    from s3d.depth.depth_anything import write_random_weights

    weights = write_random_weights(tmp_path / "da.safetensors")
    cfg = compose("convert", ["depth=depth_anything_v2_small", f"depth.weights={weights}"])
    depth = depth_backend(cfg, torch.device("cpu"))
    assert depth.resolution == 266 and depth.keyframe_interval == 2
    assert depth.autocast_dtype == (torch.bfloat16 if cpu_has_bf16() else None)  # bf16 only where the CPU has it natively
    lite0 = depth_backend(compose("convert", ["depth=s3d_lite0"]), torch.device("cpu"))
    assert lite0.resolution == 256 and lite0.keyframe_interval == 1 and lite0.autocast_dtype is None
    assert (
        depth_backend(compose("convert", ["depth=depth_anything_v2_small", f"depth.weights={weights}", "precision=fp32"]), torch.device("cpu")).autocast_dtype
        is None
    )


@cuda
def test_cuda_nvenc(tmp_path):
    if "h264_nvenc" not in av.codecs_available:
        pytest.skip("this PyAV build has no NVENC encoder")
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=6)
    out = tmp_path / "o.mkv"
    convert(compose("convert", [f"input={clip}", f"output={out}", "depth=tiny_random", "quiet=true", "device=cuda", "video.codec=h264_nvenc"]))
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"


def test_interpolation_option_reaches_the_pipeline_and_is_checked(tmp_path):
    from s3d.convert import stereo_settings

    assert stereo_settings(compose("convert", [])).interpolation == "bicubic"
    assert stereo_settings(compose("convert", ["interpolation=bilinear"])).interpolation == "bilinear"
    for bad in ("interpolation=nearest", "eye=up"):
        with pytest.raises(S3DError, match="must be one of"):
            stereo_settings(compose("convert", [bad]))
    # The two settings give different right eyes for the same frames and depth (fractional shifts).
    frames = torch.randint(0, 256, (1, 48, 64, 3), dtype=torch.uint8)
    outs = [StereoPipeline(_depth(), StereoSettings(interpolation=m), torch.device("cpu"))(frames) for m in ("bicubic", "bilinear")]
    assert outs[0].shape == outs[1].shape == (1, 48, 128, 3) and torch.equal(outs[0][:, :, :64], frames)
    assert not torch.equal(outs[0][:, :, 64:], outs[1][:, :, 64:])
