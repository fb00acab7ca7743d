"""Fit the weight of the vertical prior ("lower in the frame is nearer") blended into the default backend's
nearness, against the PSMNet teacher's disparity (the stereo network sees both eyes), on real pairs that the
data README allows for training but that the shipped model never saw (so it cannot have memorised them): the
SID driving pairs, Middlebury 2021 skiboots3 and the stereo photos (never an evaluation scene):

    .venv/bin/python scripts/prior_blend_fit.py [OUT.json]

For each pair the two are compared by Spearman rank correlation over the teacher's confident pixels (its two
views agree), for nearness = (1 - w) * backend + w * row / height at w = 0, 0.05, ..., 1. Prints the mean per w
and the best w.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from s3d.config import PROJECT_ROOT, compose
from s3d.convert import stereo_photo_eyes
from s3d.data.pairs import find_pairs
from s3d.data.teacher import LabelSettings, teacher_labels
from s3d.depth import build_depth
from s3d.evaluate import disparity_metrics, load_rgb, vertical_prior
from s3d.models.psmnet import load_psmnet

WEIGHTS = [round(0.05 * i, 2) for i in range(21)]
LABELS = LabelSettings(max_width=448)  # the teacher at most 448 px wide: a few seconds a pair on this CPU


def tuning_pairs(shared: Path) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, left, right)`` of the held-out training-allowed pairs, ``(1, 3, H, W)`` in ``[0, 1]``."""
    out = [(n, load_rgb(lp), load_rgb(rp)) for root in ("sid_mini", "middlebury2021_skiboots3") for n, lp, rp in find_pairs(shared / "stereo_pairs" / root)]
    cfg = compose("convert", ["depth=s3d_lite0"])
    for photo in sorted((shared / "stereo_photos").iterdir()):
        eyes = stereo_photo_eyes(cfg, photo)
        if eyes is not None:
            out.append((photo.name, *(torch.from_numpy(np.ascontiguousarray(e)).permute(2, 0, 1)[None].float() / 255 for e in eyes)))
    return out


def main(out: Path | None) -> None:
    teacher = load_psmnet()
    depth = build_depth(compose("convert", ["depth=s3d_lite0"]).depth).eval()
    per_pair, start = {}, time.time()
    with torch.inference_mode():
        for name, left, right in tuning_pairs(PROJECT_ROOT.parent / "shared" / "data"):
            ref = teacher_labels(teacher, left, right, LABELS)[0][0, 0].numpy()  # NaN where the two views disagree
            near, prior = depth(left), vertical_prior(left)
            per_pair[name] = {str(w): disparity_metrics(((1 - w) * near + w * prior)[0, 0].numpy(), ref)["spearman"] for w in WEIGHTS}
            print(f"{name}: model {per_pair[name]['0.0']:.3f}, prior {per_pair[name]['1.0']:.3f}", flush=True)
    mean = {w: float(np.mean([p[str(w)] for p in per_pair.values()])) for w in WEIGHTS}
    best = max(mean, key=mean.get)
    print("mean Spearman with the teacher by prior weight: " + ", ".join(f"{w:g}: {m:.3f}" for w, m in mean.items()))
    print(
        f"best weight {best:g} ({mean[best]:.3f}; model alone {mean[0.0]:.3f}, prior alone {mean[1.0]:.3f}) on {len(per_pair)} held-out pairs, {time.time() - start:.0f} s"
    )
    if out:
        out.write_text(json.dumps({"pairs": per_pair, "mean": {str(k): v for k, v in mean.items()}, "best": best}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
