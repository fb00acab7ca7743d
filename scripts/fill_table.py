"""The README's fill table (issue 24) from the JSON files of scripts/fill_evaluate.sh.

python scripts/fill_table.py [BASELINE]   (BASELINE: the fill the brackets compare with; default mirror, the default
when issue 24 was filed). Per set and fill: the mean of each metric over the pairs (median for the sharpness ratio),
and in brackets the mean change against BASELINE with its range over the pairs (whole eye: on how many pairs it is
better), then the mean over the three sets of the holes' change: issue 24's goal is +2.5 dB, at least +1 on each.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "Middlebury evaluation pairs": "results/evaluation_fill.json",
    "`kitti2012_eval_only`": "results/evaluation_fill_kitti.json",
    "stereo photos (calf, Panasonic-DMC-GX8, stereograph)": "results/evaluation_fill_photos.json",
}
FILLS = ("smooth", "stretch", "mirror", "learned")


def rows(name: str, path: Path, baseline: str) -> tuple[list[str], dict[str, float]]:
    pairs = json.loads(path.read_text())["pairs"]
    lines, gains = [], {}
    for fill in FILLS:
        per = [p[f"fill_{fill}"] for p in pairs.values() if f"fill_{fill}" in p]
        if not per:
            continue
        base = [p[f"fill_{baseline}"] for p in pairs.values() if f"fill_{fill}" in p]
        mean = {k: statistics.fmean(r[k] for r in per) for k in ("psnr", "psnr_holes", "psnr_band", "siou", "streaks", "holes")}
        whole = [r["psnr"] - b["psnr"] for r, b in zip(per, base)]
        holes = [r["psnr_holes"] - b["psnr_holes"] for r, b in zip(per, base)]
        gains[fill] = statistics.fmean(holes)
        vs = fill != baseline
        w = f" ({statistics.fmean(whole):+.2f}; better on {sum(g > 0 for g in whole)} of {len(whole)})" if vs else ""
        h = f" ({gains[fill]:+.2f}; {min(holes):+.2f} to {max(holes):+.2f})" if vs else ""
        sharp = statistics.median(r["sharpness"] for r in per)
        lines.append(
            f"| {name} ({len(per)}) | `{fill}` | {mean['psnr']:.2f}{w} | {mean['psnr_holes']:.2f}{h} | {mean['psnr_band']:.2f} "
            f"| {mean['siou']:.3f} | {sharp:.2f} | {mean['streaks']:.2f} | {100 * mean['holes']:.1f} % |"
        )
    return lines, gains


def main(argv: list[str]) -> int:
    baseline = argv[0] if argv else "mirror"
    print(
        "| pairs (none trained on) | `fill=` | PSNR, whole eye | PSNR, disoccluded pixels | PSNR, band beside them | SIoU | median sharpness | streaks | holes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    by_set = {}
    for name, rel in SETS.items():
        lines, by_set[name] = rows(name, ROOT / rel, baseline)
        print("\n".join(lines))
    for fill in FILLS:
        if fill != baseline and all(fill in g for g in by_set.values()):
            each = [g[fill] for g in by_set.values()]
            print(
                f"\n{fill} against {baseline}, disoccluded pixels: {statistics.fmean(each):+.2f} dB over the sets ({', '.join(f'{e:+.2f}' for e in each)})",
                end="",
            )
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
