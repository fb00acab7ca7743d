"""Where conversion's peak memory goes: resident memory after each step of a conversion, in one process.

    python scripts/memory_probe.py CLIP [convert overrides ...]

Prints VmRSS (MB) after importing torch, after building the pipeline (depth network, engine, kernel), and
the peak (VmHWM) during the conversion of CLIP; run it with MALLOC_ARENA_MAX=2 etc. to compare allocators.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path


def status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    clip, overrides = sys.argv[1], sys.argv[2:]
    print(f"python: {status('VmRSS'):.0f} MB")
    import torch  # noqa: F401

    print(f"import torch: {status('VmRSS'):.0f} MB")
    from s3d.config import compose
    from s3d.convert import _pipeline, convert

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose("convert", [f"input={clip}", f"output={Path(tmp) / 'o.mkv'}", "quiet=true", *overrides])
        print(f"import s3d: {status('VmRSS'):.0f} MB")
        pipeline = _pipeline(cfg, video=True)
        print(f"pipeline built: {status('VmRSS'):.0f} MB (peak so far {status('VmHWM'):.0f})")
        del pipeline
        gc.collect()
        start = time.perf_counter()
        convert(cfg)
        print(f"converted in {time.perf_counter() - start:.1f} s: now {status('VmRSS'):.0f} MB, peak {status('VmHWM'):.0f} MB")


if __name__ == "__main__":
    main()
