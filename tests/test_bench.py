"""make bench: the benchmark runs end to end on a small clip and writes the JSON the README quotes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_video
from PIL import Image

from s3d.bench import cut_clip, format_table, run, stillest
from s3d.config import compose
from s3d.depth.densedepth import DenseDepth
from s3d.depth.depth_anything import DepthAnythingV2Small
from s3d.export import export_model
from s3d.io.video import probe_video
from s3d.models.fill import FillNet


def test_bench_writes_every_figure(tmp_path: Path):
    clip = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=12)
    out = tmp_path / "bench" / "results.json"
    pair = tmp_path / "pair"
    pair.mkdir()
    texture = np.random.default_rng(1).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    Image.fromarray(texture).save(pair / "left.png")
    Image.fromarray(np.roll(texture, -3, axis=1)).save(pair / "right.png")  # the whole scene 3 px nearer in the right eye
    fill = export_model(FillNet(), {"_target_": "s3d.models.fill.FillNet"}, None, tmp_path / "fill.safetensors")
    cfg = compose(
        "bench",
        [
            f"clips=[{clip}]",
            "short_clip_seconds=0.25",
            f'convert=["depth=tiny_random","fill_weights={fill}"]',
            "stage_frames=8",
            "still_frames=6",
            "network_sizes=[[32,64]]",
            f"output={out}",
            f"quality_pair={pair}",
            "depth_compare_rounds=1",
            "fill_compare_rounds=1",
        ],
    )
    results = run(cfg)
    saved = json.loads(out.read_text())
    assert saved["clips"].keys() == results["clips"].keys() == {"clip.mp4", "clip_first0.25s.mkv"}
    r = saved["clips"]["clip.mp4"]
    assert r["frames"] == 12 and r["e2e_fps"] > 0 and r["peak_rss_mb"] > 50
    assert set(r["stage_fps"]) == {"decode", "depth", "synth", "encode"} and all(v > 0 for v in r["stage_fps"].values())
    assert r["slowest_stage"] in r["stage_fps"] and r["e2e_vs_slowest_stage"] > 0
    assert set(r["stage_cpu_ms_per_frame"]) == set(r["stage_fps"]) and all(v > 0 for v in r["stage_cpu_ms_per_frame"].values())
    assert r["e2e_cpu_ms_per_frame"] > 0 and (r["ffmpeg_cpu_ms_per_frame"] is None) == (shutil.which("ffmpeg") is None)
    assert set(r["synth_fps_by_interpolation"]) == {"bicubic", "bilinear"}
    assert set(r["synth_fps_by_fill"]) == {"smooth", "stretch", "mirror", "learned"}
    assert all(v > 0 for v in [*r["synth_fps_by_interpolation"].values(), *r["synth_fps_by_fill"].values()])
    assert (r["ffmpeg_fps"] is None) == (shutil.which("ffmpeg") is None)
    assert r["e2e_vs_ffmpeg"] is None if r["ffmpeg_fps"] is None else r["e2e_vs_ffmpeg"] == pytest.approx(r["e2e_fps"] / r["ffmpeg_fps"])
    assert r["synth_vs_e2e"] == pytest.approx(r["stage_fps"]["synth"] / r["e2e_fps"])
    assert 0 < r["flicker"]["on"] < r["flicker"]["off"]  # the synthetic clip moves; smoothing must calm it
    assert set(r["flicker"]["fill"]) == {"smooth", "mirror", "stretch", "learned"} and all(v >= 0 for v in r["flicker"]["fill"].values())
    assert saved["clips"]["clip_first0.25s.mkv"]["frames"] < 12
    assert {k.split()[0] for k in saved["depth_seconds_per_frame"]} == {"s3d_lite0", "densedepth", "depth_anything_v2_small"}
    assert saved["engine"] == "torch"  # the default engine; the bench builds depth as convert.py does
    c = saved["depth_compare"]  # depth=auto (Depth Anything V2 Small, random weights here) against s3d_lite0, same clip, same run
    assert c["clip"] == "clip_first0.25s.mkv" and c["default_weights"] == "random (same cost)"
    assert c["default_vs_s3d_lite0"] == pytest.approx(c["e2e_fps"]["default"] / c["e2e_fps"]["s3d_lite0"]) and c["default_vs_s3d_lite0"] > 0
    f = saved["fill_compare"]  # fill=learned against fill=smooth, end to end, same clip, same run
    assert f["clip"] == "clip_first0.25s.mkv" and f["learned_vs_smooth"] == pytest.approx(f["e2e_fps"]["learned"] / f["e2e_fps"]["smooth"])
    q = saved["view_quality"]
    # the real right eye is the left one shifted: the fitted knobs (screen plane) recover it, the raw conversion does not
    assert q["pair"] == "pair" and q["fitted_gain_db"] > -0.2 and q["converted_psnr"] < 30 and 0.3 < q["converted_sharpness"] < 1.5
    assert "spearman" not in q  # no ground truth beside this pair
    table = format_table(saved)
    assert "clip.mp4" in table and "view quality on pair" in table and "CPU ms/frame by stage" in table and "fill=learned vs fill=smooth" in table


def test_cut_clip_keeps_the_start_without_reencoding(tmp_path: Path):
    clip = make_video(tmp_path / "clip.mp4", frames=24)
    short = cut_clip(clip, tmp_path / "short.mkv", 0.5)
    info = probe_video(short)
    assert 10 <= info.frames <= 14  # 24 fps, half a second


def test_stillest_finds_the_still_stretch():
    g = np.random.default_rng(0)
    frames = g.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8)
    frames[8:14] = frames[8]  # six identical frames
    start, change = stillest(frames, 6)
    assert start == 8 and change == 0.0


@pytest.mark.parametrize("backend", [DenseDepth, DepthAnythingV2Small])
def test_random_weight_backends_need_no_weights_file(backend):
    depth = backend.with_random_weights(resolution=None).eval()
    a, b = (dict(m.named_parameters()) for m in (depth.net, backend.with_random_weights().net))
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)  # fresh random weights each time
    with torch.inference_mode():
        near = depth(torch.rand(2, 3, 64, 96))
    assert near.shape == (2, 1, 64, 96) and torch.isfinite(near).all()


@pytest.mark.slow
def test_the_gpu_measurement_script_runs_on_any_device(tmp_path: Path):
    """scripts/gpu_bench.py --smoke: issue 25's measurement end to end on tiny clips (here on the CPU)."""
    import subprocess
    import sys

    from s3d.config import PROJECT_ROOT

    out = tmp_path / "cuda.json"
    r = subprocess.run(
        [sys.executable, "scripts/gpu_bench.py", "--smoke", "--out", str(out)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert set(saved["clips"]) == {"clip_1080p.mkv", "clip_4K.mkv"} and saved["depth_keyframe_interval"] >= 1
    assert all(v > 0 for v in saved["sweep"]["e2e_fps"].values()) and all(v > 0 for v in saved["sweep"]["depth_stage_fps"].values())
    assert all("goal_depth_stage_150fps" in c for c in saved["clips"].values())
