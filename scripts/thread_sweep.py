"""End-to-end speed of torch / encoder thread splits on one clip, each in a fresh process (s3d.bench.end_to_end).

    .venv/bin/python scripts/thread_sweep.py CLIP [SECONDS] [ROUNDS]   (default: a 3 s cut, 2 rounds)

Splits are ``threads`` (torch) and ``video.threads`` (x264); 0 = each library's own choice. The rounds
interleave the splits, so the machine's noise hits all of them alike.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from s3d.bench import cut_clip, end_to_end

SPLITS = [(0, 0), (2, 1), (1, 1), (1, 2), (2, 2)]


def main(clip: Path, seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cut = cut_clip(clip, Path(tmp) / f"cut{seconds:g}s.mkv", seconds)
        fps: dict[tuple[int, int], list[float]] = {s: [] for s in SPLITS}
        for _ in range(rounds):
            for torch_threads, x264_threads in SPLITS:
                r = end_to_end(cut, [f"threads={torch_threads}", f"video.threads={x264_threads}"], Path(tmp))
                fps[(torch_threads, x264_threads)].append(r["fps"])
        for (t, x), v in fps.items():
            print(f"threads={t} video.threads={x}: " + ", ".join(f"{f:.2f}" for f in v) + f" fps (mean {sum(v) / len(v):.2f})")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    main(Path(args[0]), float(args[1]) if len(args) > 1 else 3.0, int(args[2]) if len(args) > 2 else 2)
