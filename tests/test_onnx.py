"""ONNX Runtime as the depth engine: same nearness as PyTorch, options checked before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch

from s3d.config import compose
from s3d.depth import accelerate, build_depth
from s3d.depth.onnx import OnnxRuntimePredict, resolve_engine
from s3d.errors import S3DError

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _backend(name: str):
    return build_depth(compose("convert", [f"depth={name}"]).depth)


@pytest.mark.parametrize("name", [pytest.param("s3d_lite0", marks=pytest.mark.slow), "tiny_random"])
def test_onnxruntime_nearness_matches_torch(name: str, tmp_path, monkeypatch):
    monkeypatch.setenv("S3D_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    ref, ort = _backend(name), accelerate(_backend(name), CPU, engine="onnxruntime")
    assert isinstance(ort.predict, OnnxRuntimePredict)
    # working sizes 16:9, 4:3 and portrait from one graph; the batch changes between calls
    for shape in ((3, 3, 180, 320), (1, 3, 240, 320), (2, 3, 320, 180)):
        x = torch.rand(*shape)
        a, b = ref(x), ort(x)
        assert b.shape == a.shape == (shape[0], 1, *shape[-2:])
        assert (a - b).abs().max() < 1e-4, f"{name} {shape}"
    assert ort.predict.exported and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    # the next run takes the graph from the cache, and gets the same nearness
    again = accelerate(_backend(name), CPU, engine="onnxruntime")
    x = torch.rand(1, 3, 180, 320)
    assert torch.equal(again(x), ort(x)) and not again.predict.exported


def test_onnxruntime_graph_is_keyed_by_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("S3D_CACHE_DIR", str(tmp_path))
    x = torch.rand(1, 3, 64, 96)
    first = accelerate(_backend("tiny_random"), CPU, engine="onnxruntime")
    first(x)
    changed = _backend("tiny_random")
    with torch.no_grad():
        next(changed.parameters()).add_(0.5)  # a retrained network must not meet the old graph
    ref = changed(x)
    second = accelerate(changed, CPU, engine="onnxruntime")
    assert (second(x) - ref).abs().max() < 1e-4 and second.predict.exported
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2


def test_onnxruntime_runs_odd_sizes_through_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("S3D_CACHE_DIR", str(tmp_path))
    backend = accelerate(_backend("tiny_random"), CPU, engine="onnxruntime")
    backend.resolution = None  # run at exactly the size given: 50x70 is no multiple of 32
    x = torch.rand(1, 3, 50, 70)
    ref = _backend("tiny_random")
    ref.resolution = None
    assert torch.equal(backend(x), ref(x)) and backend.predict.session is None


def test_engine_options_are_checked():
    with pytest.raises(S3DError, match="engine must be one of auto, torch, onnxruntime; got 'tensorrt'"):
        resolve_engine("tensorrt", CPU)
    with pytest.raises(S3DError, match="runs on the CPU"):
        resolve_engine("onnxruntime", torch.device("cuda"))
    assert resolve_engine("auto", torch.device("cuda")) == "torch"
    assert resolve_engine("auto", CPU) == "onnxruntime"
    with pytest.raises(S3DError, match="compile=true is a PyTorch option"):
        accelerate(_backend("tiny_random"), CPU, compile=True, engine="onnxruntime")
    # asking for a PyTorch-only option with engine=auto picks PyTorch rather than failing
    picked = accelerate(_backend("tiny_random"), CPU, precision="bf16", engine="auto")
    assert not isinstance(picked.predict, OnnxRuntimePredict) and picked.autocast_dtype == torch.bfloat16


def test_convert_py_with_engine_onnxruntime(tmp_path):
    from conftest import make_video

    clip = make_video(tmp_path / "c.mp4", width=96, height=64, frames=6)
    out = tmp_path / "o.mkv"
    env = {**os.environ, "S3D_CACHE_DIR": str(tmp_path / "cache")}
    args = [sys.executable, "convert.py", f"input={clip}", f"output={out}", "engine=onnxruntime", "depth=tiny_random", "quiet=true"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (64, 192, 3)
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1  # the graph it ran


def test_convert_refuses_an_unknown_engine_in_one_line(tmp_path):
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (90, 120, 30)).save(photo)
    run = subprocess.run([sys.executable, "convert.py", f"input={photo}", "engine=tensorrt", "depth=tiny_random"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == ["s3d: error: engine must be one of auto, torch, onnxruntime; got 'tensorrt'"]
    assert list(tmp_path.iterdir()) == [photo]
