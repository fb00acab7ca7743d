"""End-to-end speed and memory of convert.py variants on one clip, each in a fresh process, interleaved:

    .venv/bin/python scripts/e2e_sweep.py CLIP SECONDS ROUNDS "OVERRIDES A" "OVERRIDES B" ...
    e.g. scripts/e2e_sweep.py clip.webm 10 2 "engine=torch" "engine=onnxruntime" "temporal.reuse=0.005"

Each variant is a space-separated list of convert.py overrides ("" = the defaults). The rounds interleave
the variants, so the machine's noise hits all of them alike (s3d.bench.end_to_end: fps without model
loading, CPU ms per frame, peak RSS of the whole process).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from s3d.bench import cut_clip, end_to_end


def main(clip: Path, seconds: float, rounds: int, variants: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cut = cut_clip(clip, Path(tmp) / f"cut{seconds:g}s.mkv", seconds)
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(rounds):
            for v in variants:
                runs[v].append(end_to_end(cut, v.split(), Path(tmp)))
        for v, rs in runs.items():
            fps = ", ".join(f"{r['fps']:.2f}" for r in rs)
            cpu = ", ".join(f"{r['cpu_ms_per_frame']:.0f}" for r in rs)
            rss = ", ".join(f"{r['peak_rss_mb']:.0f}" for r in rs)
            print(f"{v or '(defaults)'}: {fps} fps; CPU {cpu} ms/frame; peak RSS {rss} MB")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
