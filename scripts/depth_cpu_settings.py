"""Depth Anything V2 Small on the CPU: milliseconds per 720p frame of the network alone per working resolution
and precision (README, Speed; why ``conf/depth/depth_anything_v2_small.yaml`` has ``cpu: resolution: 266,
precision: bf16``):

    python scripts/depth_cpu_settings.py [SECONDS_PER_SETTING]

Random weights (the published architecture: the same cost as the real ones), batches of 4 frames of 1280x720,
resize in and out and normalisation included (:meth:`s3d.depth.base.DepthBackend.forward`), channels_last as
convert.py runs it, interleaved over two rounds. Also the mean difference of the nearness in bf16 from fp32.
"""

from __future__ import annotations

import sys
import time

import torch

from s3d.depth.base import accelerate, cpu_has_bf16
from s3d.depth.depth_anything import DepthAnythingV2Small

RESOLUTIONS = (266, 308, 364, 518)
CPU = torch.device("cpu")


def ms_per_frame(depth, x: torch.Tensor, seconds: float) -> tuple[float, torch.Tensor]:
    out = depth(x)  # warm-up
    start, frames = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        out = depth(x)
        frames += x.shape[0]
    return 1000 * (time.perf_counter() - start) / frames, out


def main(seconds: float) -> None:
    torch.manual_seed(0)
    net = DepthAnythingV2Small.with_random_weights().net
    x = torch.rand(4, 3, 720, 1280)
    precisions = ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)
    print(f"bf16 native on this CPU: {cpu_has_bf16()}; torch threads {torch.get_num_threads()}")
    results: dict[tuple[int, str], list[float]] = {}
    for _ in range(2):
        for res in RESOLUTIONS:
            outs = {}
            for precision in precisions:
                depth = accelerate(DepthAnythingV2Small(None, resolution=res, net=net).eval(), CPU, precision, channels_last=True)
                ms, outs[precision] = ms_per_frame(depth, x, seconds)
                results.setdefault((res, precision), []).append(ms)
            if len(outs) == 2:
                results.setdefault((res, "bf16 vs fp32 |nearness|"), []).append(float((outs["bf16"] - outs["fp32"]).abs().mean()))
    for (res, what), values in results.items():
        unit = "" if "|" in what else " ms/frame"
        print(f"{res} px {what}: " + ", ".join(f"{v:.4g}" for v in values) + unit)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0)
