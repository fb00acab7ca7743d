"""The CUDA path measured (issue 25): ``python scripts/gpu_bench.py [--out bench/results_cuda.json] [--smoke]``.

Run by ``scripts/gpu_check.sh`` on a machine with an NVIDIA GPU. Clips of 1920x1080 and 3840x2160 are made on
the spot from the bundled sample (upscaled, looped to ``--seconds``), then:

1. ``make bench``'s measurement (:func:`s3d.bench.run`, the same keys as ``bench/results.json``) of both clips
   with the default depth (``depth=auto``: Depth Anything V2 Small, random weights of the same cost where its
   weights are absent) on the GPU: each stage alone, end to end, and the encode floor (ffmpeg decoding,
   stacking and encoding with the same x264 settings on the machine's cores: H100/H200 have no NVENC).
2. A sweep, end to end: depth network (Depth Anything V2 Small, s3d_lite0) x ``compile`` x batch size, and the
   depth stage alone (frames already on the GPU, fp16) per batch size.

``--smoke`` runs the same code on tiny clips on whatever device there is (a check that the script works,
not a measurement).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from s3d.bench import Clock, default_depth_weights, end_to_end, format_table, run
from s3d.config import PROJECT_ROOT, compose
from s3d.convert import depth_backend
from s3d.io.atomic import atomic_output
from s3d.io.video import decode_frames, probe_video
from s3d.pipeline import select_device, to_tensor

SAMPLE = PROJECT_ROOT / "samples" / "big_buck_bunny_432_433s_720p.webm"
SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}


def make_clip(path: Path, height: int, width: int, seconds: float) -> Path:
    """The bundled sample upscaled to ``width x height`` and looped to ``seconds`` (x264, near lossless)."""
    frames = [f.rgb for f in decode_frames(probe_video(SAMPLE))]
    count = max(1, round(seconds * 24))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16", "preset": "ultrafast"}
        for i in range(count):
            rgb = torch.from_numpy(frames[i % len(frames)]).permute(2, 0, 1)[None].float()
            big = F.interpolate(rgb, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 255).byte()[0].permute(1, 2, 0).numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(big), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def depth_stage_fps(clip: Path, overrides: list[str], batch: int, frames: int) -> float:
    """Frames per second of the depth network alone on ``frames`` frames of ``clip`` already on the device."""
    cfg = compose("convert", overrides)
    depth = depth_backend(cfg, select_device(cfg.device))
    device = next(depth.parameters()).device
    rgb = [f.rgb for _, f in zip(range(frames), decode_frames(probe_video(clip)))]
    xs = [to_tensor(torch.from_numpy(np.stack(rgb[i : i + batch])), device) for i in range(0, len(rgb) - batch + 1, batch)]
    with torch.inference_mode():
        depth(xs[0])  # warm-up (and torch.compile's compile)
        clock = Clock()
        for x in xs:
            depth(x)
        seconds, _ = clock.read()
    return len(xs) * batch / max(seconds, 1e-9)


def sweep(clips: dict[str, Path], weights: Path, smoke: bool, tmp: Path) -> dict:
    """End-to-end fps per (clip, depth, compile, batch) and the depth stage's fps per batch."""
    default = ["depth=auto", f"depth.prefer.weights={weights}"]
    runs = [("1080p", default, False, b) for b in ((4,) if smoke else (4, 8, 16))]
    runs += [("1080p", default, True, 8 if not smoke else 4), ("1080p", ["depth=s3d_lite0"], False, 8 if not smoke else 4), ("4K", default, False, 4)]
    out: dict = {"e2e_fps": {}, "depth_stage_fps": {}}
    for size, depth, compiled, batch in runs:
        name = f"{size} {depth[0].split('=')[1]} compile={str(compiled).lower()} batch={batch}"
        overrides = [*depth, f"compile={str(compiled).lower()}", f"batch_size={batch}"]
        started = time.perf_counter()
        out["e2e_fps"][name] = end_to_end(clips[size], overrides, tmp)["fps"]
        print(f"{name}: {out['e2e_fps'][name]:.1f} fps end to end ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    for batch in (4,) if smoke else (4, 8, 16, 32):
        for compiled in (False, True):
            name = f"1080p depth_anything_v2_small compile={str(compiled).lower()} batch={batch}"
            out["depth_stage_fps"][name] = depth_stage_fps(clips["1080p"], [*default, f"compile={str(compiled).lower()}"], batch, 8 if smoke else 96)
            print(f"{name}: depth alone {out['depth_stage_fps'][name]:.1f} fps", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results_cuda.json")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    ap.add_argument("--smoke", action="store_true", help="tiny clips: check that the script runs, on any device")
    args = ap.parse_args(argv)
    sizes = {"1080p": (72, 128), "4K": (144, 256)} if args.smoke else SIZES
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        clips = {name: make_clip(tmp / f"clip_{name}.mkv", h, w, 1.0 if args.smoke else args.seconds) for name, (h, w) in sizes.items()}
        cfg = compose(
            "bench",
            [
                f"clips=[{clips['1080p']},{clips['4K']}]",
                "short_clip_seconds=0",
                "depth_compare_rounds=0",
                "quality_pair=null",
                "network_sizes=[]",
                f"stage_frames={16 if args.smoke else 96}",
                f"still_frames={6 if args.smoke else 24}",
                "output=null",
            ],
        )
        results = run(cfg)
        results["command"] = "python scripts/gpu_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
        results["driver"] = torch.version.cuda and f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        weights, _ = default_depth_weights([], tmp)
        results["sweep"] = sweep(clips, weights, args.smoke, tmp)
        for r in results["clips"].values():  # issue 25's goals: end to end vs the encode floor, the depth stage alone
            r["goal_e2e_vs_floor_0.8"] = bool(r.get("e2e_vs_ffmpeg") and r["e2e_vs_ffmpeg"] >= 0.8)
            r["goal_depth_stage_150fps"] = r["stage_fps"]["depth"] >= 150
        print(format_table(results))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(args.out, overwrite=True) as t:
            t.write_text(json.dumps(results, indent=2) + "\n")
        print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
