"""The default depth network with and without channels_last, interleaved in one run (noise hits both alike).

    .venv/bin/python scripts/depth_layout_timing.py [ROUNDS]

A batch of 4 random 1280x720 frames through the depth backend as convert.py builds it (256 px short side);
prints ms per frame of each round and the largest difference of the outputs.
"""

from __future__ import annotations

import sys
import time

import torch

from s3d.config import compose
from s3d.depth import accelerate, build_depth


def main(rounds: int = 5) -> None:
    cfg = compose("convert", ["depth=s3d_lite0"])
    plain = accelerate(build_depth(cfg.depth), torch.device("cpu"), "fp32", channels_last=False)
    nhwc = accelerate(build_depth(cfg.depth), torch.device("cpu"), "fp32", channels_last=True)
    x = torch.rand(4, 3, 720, 1280)
    times: dict[str, list[float]] = {"default layout": [], "channels_last": []}
    with torch.inference_mode():
        diff = float((plain(x) - nhwc(x)).abs().max())  # also the warm-up
        for _ in range(rounds):
            for name, m in (("channels_last", nhwc), ("default layout", plain)):
                start = time.perf_counter()
                m(x)
                times[name].append((time.perf_counter() - start) / 4 * 1000)
    for name, t in times.items():
        print(f"{name}: {', '.join(f'{v:.0f}' for v in t)} ms/frame (best {min(t):.1f})")
    print(f"largest difference of the nearness: {diff:.2e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
