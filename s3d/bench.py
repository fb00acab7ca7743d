"""Seconds per frame of each conversion stage, measured on a real clip: ``python -m s3d.bench [CLIP]``.

Stages are timed alone, on frames already in memory: decode (PyAV), depth (each backend at its working
resolution; weights do not change the cost, so DenseDepth is timed with random weights when the real
ones are absent, and says so), synthesis (disparity, warp, fill, pack) and encode (libx264).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from s3d.config import PROJECT_ROOT, compose
from s3d.depth import build_depth
from s3d.depth.densedepth import DenseDepth, DenseDepthConfig, DenseDepthNet
from s3d.errors import MissingWeightsError
from s3d.io.video import EncoderSettings, VideoWriter, decode_frames, probe_video
from s3d.layout import pack, packed_size
from s3d.pipeline import StereoSettings, make_eyes, to_tensor, to_uint8

SAMPLE = PROJECT_ROOT / "samples" / "big_buck_bunny_432_433s_720p.webm"


def _timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def _densedepth_random(resolution: int) -> DenseDepth:
    backend = DenseDepth.__new__(DenseDepth)
    torch.nn.Module.__init__(backend)
    backend.resolution, backend.min_depth, backend.max_depth = resolution, 10.0, 1000.0
    backend.net = DenseDepthNet(DenseDepthConfig())
    return backend.eval().requires_grad_(False)


def depth_backends() -> dict[str, torch.nn.Module]:
    backends = {"tiny_random": build_depth(compose("convert", ["depth=tiny_random"]).depth)}
    try:
        backends["s3d_lite0"] = build_depth(compose("convert", ["depth=s3d_lite0"]).depth)
    except MissingWeightsError:
        pass
    try:
        backends["densedepth"] = build_depth(compose("convert", ["depth=densedepth"]).depth)
    except MissingWeightsError:
        backends["densedepth (random weights)"] = _densedepth_random(480)
    return backends


def measure(clip: Path, batch: int = 4) -> dict:
    info = probe_video(clip)
    t0 = time.perf_counter()
    frames = [f.rgb for f in decode_frames(info)]
    decode = (time.perf_counter() - t0) / len(frames)
    x = to_tensor(torch.from_numpy(np.stack(frames[:batch])), torch.device("cpu"))
    results = {"clip": str(clip), "size": f"{info.width}x{info.height}", "frames": len(frames), "decode": decode}
    backends = depth_backends()
    with torch.inference_mode():
        for name, backend in backends.items():
            backend(x)  # warm-up
            results[f"depth[{name}]"] = _timed(lambda: backend(x), 2) / batch
        # The article's figure of merit: one 640x480 frame through the depth network alone; and 640x360.
        for h, w in ((480, 640), (360, 640)):
            small = torch.nn.functional.interpolate(x[:1], size=(h, w), mode="bilinear", align_corners=False)
            for name, backend in backends.items():
                backend(small)
                results[f"depth[{name}] at {w}x{h}"] = _timed(lambda: backend(small), 2)
        near = backends["tiny_random"](x)
        s = StereoSettings()
        results["synthesis"] = _timed(lambda: pack(*make_eyes(x, near, s), s.layout), 3) / batch
        packed = to_uint8(pack(*make_eyes(x, near, s), s.layout)).numpy()
    ph, pw = packed_size(s.layout, info.height, info.width)
    with tempfile.TemporaryDirectory() as tmp:
        with VideoWriter(Path(tmp) / "o.mkv", "matroska", info, pw, ph, EncoderSettings(), "left_right") as w:
            t0 = time.perf_counter()
            for i in range(len(frames)):
                w.write(packed[i % batch], i)
        results["encode"] = (time.perf_counter() - t0) / len(frames)
    results["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", nargs="?", default=str(SAMPLE))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    r = measure(Path(args.clip))
    print(f"{r['clip']} ({r['size']}, {r['frames']} frames) on {r['machine']}")
    for k, v in r.items():
        if isinstance(v, float):
            print(f"  {k:32s} {v * 1000:8.1f} ms/frame  {1 / v:7.1f} fps")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
