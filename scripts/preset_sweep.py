"""Speed and file size of the x264 presets on one clip, through ``convert.py`` as users run it.

    .venv/bin/python scripts/preset_sweep.py CLIP [SECONDS] [PRESET ...]   (default: the first 10 s; fast faster veryfast superfast)

Each preset converts the same cut (full SBS, default settings otherwise) in a fresh process; the time
includes model loading, so compare presets within one run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s3d.bench import cut_clip
from s3d.config import PROJECT_ROOT


def main(clip: Path, seconds: float, presets: list[str]) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cut = cut_clip(clip, Path(tmp) / f"cut{seconds:g}s.mkv", seconds)
        for preset in presets:
            out = Path(tmp) / f"{preset}.mkv"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "convert.py", f"input={cut}", f"output={out}", f"video.preset={preset}", "quiet=true"], cwd=PROJECT_ROOT, check=True
            )
            results[preset] = {"seconds": time.perf_counter() - start, "mbytes": out.stat().st_size / 1e6}
            print(f"{preset}: {results[preset]['seconds']:.1f} s, {results[preset]['mbytes']:.2f} MB", flush=True)
    return results


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    res = main(Path(args[0]), float(args[1]) if len(args) > 1 else 10.0, args[2:] or ["fast", "faster", "veryfast", "superfast"])
    print(json.dumps(res, indent=2))
