"""Measure the PSMNet teacher on the evaluation pairs with ground-truth disparity (run by hand).

``python scripts/psmnet_eval.py [OUT.json] [--weights weights/psmnet_kitti2015.safetensors] [--threads 2]``

Pairs: the three Middlebury 2006 third-size pairs (``middlebury2006_gordonssu``: Aloe, Baby, Bowling;
``true_disp.png`` in px, 0 = unknown) and Middlebury 2014 Motorcycle (``skimage_middlebury2014_motorcycle``,
741 x 500; ``motorcycle_disp.npz`` in px, inf = unknown), all at their own size (each is at least 256 px
high). Per pair, on the pixels with ground truth: Spearman rank correlation, EPE (mean absolute error, px),
bad-2px (% of pixels off by more than 2 px) and the seconds of :func:`s3d.models.psmnet.psmnet_disparity`
(one run each, after one warm-up run on the first pair; wall-clock and CPU seconds, the CPU
seconds of all threads being the steadier number on a shared machine). Prints a table and writes JSON (default
``results/psmnet_teacher.json``). Time it only while nothing else heavy runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from s3d.config import PROJECT_ROOT
from s3d.evaluate import disparity_metrics, load_gt_disparity, load_rgb
from s3d.io.atomic import atomic_output
from s3d.models.psmnet import DEFAULT_WEIGHTS, MIN_SIZE, load_psmnet, psmnet_disparity

PAIRS_ROOT = PROJECT_ROOT.parent / "shared" / "data" / "stereo_pairs"
PAIRS = {
    "Aloe": ("middlebury2006_gordonssu/Aloe", "left.png", "right.png"),
    "Baby": ("middlebury2006_gordonssu/Baby", "left.png", "right.png"),
    "Bowling": ("middlebury2006_gordonssu/Bowling", "left.png", "right.png"),
    "Motorcycle": ("skimage_middlebury2014_motorcycle", "motorcycle_left.png", "motorcycle_right.png"),
}


def upscale_to_min(left: torch.Tensor, right: torch.Tensor, gt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, float]:
    """A pair under 256 px high is scaled up (the ground truth with it, disparities times the width ratio)."""
    h, w = left.shape[-2:]
    scale = max(1.0, MIN_SIZE / h, MIN_SIZE / w)
    if scale == 1.0:
        return left, right, gt, 1.0
    size = (round(h * scale), round(w * scale))
    left, right = (F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1) for x in (left, right))
    g = F.interpolate(torch.from_numpy(np.nan_to_num(gt, nan=0.0))[None, None], size=size, mode="nearest")[0, 0].numpy()
    return left, right, np.where(g > 0, g * size[1] / w, np.nan), size[1] / w


def measure(net, name: str, folder: str, left_name: str, right_name: str, warm_up: bool = False) -> dict:
    d = PAIRS_ROOT / folder
    left, right = load_rgb(d / left_name), load_rgb(d / right_name)
    left, right, gt, scale = upscale_to_min(left, right, load_gt_disparity(d, d / left_name))
    if warm_up:
        psmnet_disparity(net, left, right)
    t, cpu = time.perf_counter(), time.process_time()
    disp = psmnet_disparity(net, left, right)[0, 0].numpy()
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    known = np.isfinite(gt)
    err = np.abs(disp - gt)[known]
    return {
        "pair": name,
        "size": [int(left.shape[-1]), int(left.shape[-2])],
        "scaled_by": scale,
        "known_pixels": int(known.sum()),
        "gt_range_px": [float(np.nanmin(gt)), float(np.nanmax(gt))],
        "spearman": disparity_metrics(disp, gt)["spearman"],
        "epe_px": float(err.mean()),
        "bad2_percent": float((err > 2).mean() * 100),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, nargs="?", default=PROJECT_ROOT / "results" / "psmnet_teacher.json")
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    net = load_psmnet(args.weights)
    rows = [measure(net, name, *spec, warm_up=i == 0) for i, (name, spec) in enumerate(PAIRS.items())]
    print(f"{'pair':<11} {'size':>9} {'Spearman':>8} {'EPE px':>7} {'bad-2px %':>9} {'s/pair':>7} {'CPU s':>6}")
    for r in rows:
        print(
            f"{r['pair']:<11} {r['size'][0]:>4}x{r['size'][1]:<4} {r['spearman']:>8.3f} {r['epe_px']:>7.2f} {r['bad2_percent']:>9.1f} {r['seconds']:>7.2f} {r['cpu_seconds']:>6.1f}"
        )
    report = {
        "model": "PSMNet stacked hourglass, maxdisp 192, KITTI 2015 weights (s3d.models.psmnet)",
        "weights": str(args.weights.resolve().relative_to(PROJECT_ROOT) if args.weights.resolve().is_relative_to(PROJECT_ROOT) else args.weights),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "timing": "psmnet_disparity (normalise, pad, network, crop), one run per pair after one warm-up run",
        "pairs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out, overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"1-min load average {load_start:.2f} at the start, {report['load_average_1min']['end']:.2f} at the end; wrote {args.out}")


if __name__ == "__main__":
    main()
