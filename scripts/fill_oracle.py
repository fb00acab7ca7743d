"""How far a fill of the holes could get, on the pairs of scripts/fill_evaluate.sh: each shipped fill against fills
that know part of the truth, from the same PSMNet teacher disparity (the cache evaluate.py keeps), on the same holes
(s3d.evaluate.disocclusions). PSNR over the disoccluded pixels, pooled per set as fill_table.py does (the mean of
the pairs' PSNR):

- ``mirror``, ``smooth``, ``learned``: the conversion's eye (s3d.pipeline.render_view_uint8), as evaluate.py runs it;
- ``learned_whole_frame``: ``learned`` with the whole frame as every window (is the windows' 16 px reach a limit?);
- ``oracle_run_mean``: every row's run of hole pixels painted in the real eye's mean colour over that run (three
  numbers per run: what a perfect flat fill could do);
- ``oracle_side``: every run painted in the colour of the valid pixel at its left or right end, whichever is
  nearer the truth (a stretch that knows which side is the background);
- ``oracle_blur``: the real eye blurred (Gaussian, sigma ``BLUR`` px) in the holes: a fill that knows the hidden
  background's colours to within that blur.

python scripts/fill_oracle.py [OUT.json]   (needs weights/psmnet_kitti2015.safetensors or the evaluations' cache)
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kornia
import numpy as np
import torch

import s3d.models.fill as fill_module
from s3d.config import PROJECT_ROOT, compose
from s3d.data.pair_files import find_pairs
from s3d.evaluate import cached_teacher_disparity, disocclusions, load_rgb, masked_psnr
from s3d.export import load_fill_net
from s3d.io.image import to_uint8
from s3d.models.psmnet import load_psmnet
from s3d.pipeline import render_view_uint8

BLUR = 4.0  # px
WHOLE = (1 << 14, 1 << 14)  # a window context larger than any frame


def run_means(real: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """Each row's run of hole pixels in ``real``'s mean colour over the run: ``(1, 3, H, W)``, ``(1, 1, H, W)`` bool."""
    out = real.clone()
    h = holes[0, 0].numpy()
    for y in range(h.shape[0]):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], h[y].astype(np.int8), [0]))))
        for a, b in zip(edges[::2], edges[1::2]):
            out[0, :, y, a:b] = real[0, :, y, a:b].mean(-1, keepdim=True)
    return out


def run_sides(eye: torch.Tensor, real: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """Each row's run of hole pixels in the colour of one of its two valid neighbours in ``eye`` along the row,
    whichever is nearer the real eye's run: a fill that knows which side is the background."""
    out = eye.clone()
    h = holes[0, 0].numpy()
    w = h.shape[1]
    for y in range(h.shape[0]):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], h[y].astype(np.int8), [0]))))
        for a, b in zip(edges[::2], edges[1::2]):
            sides = [eye[0, :, y, c : c + 1] for c in (a - 1, b) if 0 <= c < w]
            truth = real[0, :, y, a:b]
            out[0, :, y, a:b] = min(sides, key=lambda c: float(((truth - c) ** 2).sum()))
    return out


@contextmanager
def whole_frame_windows() -> Iterator[None]:
    """Inside, the learned fill runs with the whole frame as the window of every cell (the conversion's own path,
    only its context widened); scripts/fill_flicker_causes.py uses it too."""
    tiles = fill_module.fill_tiles
    fill_module.fill_tiles = functools.partial(tiles, context=WHOLE)
    try:
        yield
    finally:
        fill_module.fill_tiles = tiles


def rendered(left: torch.Tensor, disparity: torch.Tensor, fill: str, fill_net) -> torch.Tensor:
    """The right eye as evaluate.py renders it: ``left (1, 3, H, W)`` float -> ``(1, 3, H, W)`` float."""
    return render_view_uint8(to_uint8(left), disparity, 1, "bicubic", fill, fill_net).permute(0, 3, 1, 2).float() / 255


def oracle_rows(sets: dict[str, list[str]]) -> dict:
    cfg = compose("evaluate")  # evaluate.py's teacher, its cache and fill network
    fill_net = load_fill_net(Path(cfg.fill_weights), torch.device("cpu"))
    teacher = load_psmnet(cfg.teacher)
    result = {}
    for set_name, roots in sets.items():
        scores: dict[str, list[float]] = {}
        for root in roots:
            for _, lp, rp in find_pairs(root):
                left, right = load_rgb(lp), load_rgb(rp)
                d = cached_teacher_disparity(teacher, Path(cfg.teacher), lp, rp, left, right, cfg.teacher_cache)
                holes, _ = disocclusions(d)
                eyes = {f: rendered(left, d, f, fill_net) for f in ("mirror", "smooth", "learned")}
                with whole_frame_windows():
                    eyes["learned_whole_frame"] = rendered(left, d, "learned", fill_net)
                eyes["oracle_run_mean"] = run_means(right, holes)
                eyes["oracle_side"] = run_sides(eyes["mirror"], right, holes)
                eyes["oracle_blur"] = kornia.filters.gaussian_blur2d(right, (4 * int(BLUR) + 1,) * 2, (BLUR, BLUR), border_type="replicate")
                for name, eye in eyes.items():
                    scores.setdefault(name, []).append(masked_psnr(eye, right, holes))
        result[set_name] = {name: float(np.mean(v)) for name, v in scores.items()} | {"pairs": len(scores["mirror"])}
    return result


def photo_folders() -> list[str]:
    """The stereo photos' folders as scripts/fill_evaluate.sh cuts them (it prints nothing else: reuse its code)."""
    script = (PROJECT_ROOT / "scripts" / "fill_evaluate.sh").read_text()
    code = script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    views = "outputs/fill_views/stereo_photos"
    photos = ["Panasonic-DMC-GX8.mpo", "calf-left-right.jpg", "stereograph.left-right.jpg"]
    out = subprocess.run([sys.executable, "-", views, *photos], input=code, capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    return out.stdout.strip().split(",")


def main(argv: list[str]) -> int:
    sets = {
        "middlebury": list(compose("evaluate").pairs),
        "kitti": [str(PROJECT_ROOT.parent / "shared" / "data" / "stereo_pairs" / "kitti2012_eval_only")],
        "photos": photo_folders(),
    }
    result = oracle_rows(sets)
    for set_name, row in result.items():
        base = row["mirror"]
        print(f"{set_name} ({row['pairs']} pairs): " + ", ".join(f"{k} {v:.2f} ({v - base:+.2f})" for k, v in row.items() if k != "pairs"))
    if argv:
        Path(argv[0]).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
