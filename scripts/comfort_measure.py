"""Comfort controls measured on a real clip (README, Convert): flicker and disocclusion of each setting.

    python scripts/comfort_measure.py CLIP [SECONDS]

The default depth (with temporal smoothing and depth reuse, as convert.py runs it) on the first SECONDS of
CLIP, then per comfort setting: flicker (mean |disparity change| between consecutive frames, px), the share
of the rendered eye's pixels that no input pixel lands on (holes the fill must invent: where tearing can
show), the share of those holes within 2 px on the near side of a depth edge (tearing on the object rather
than on the background), the disparity range used (px); for auto convergence also where the screen plane went.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from s3d.bench import cut_clip
from s3d.config import compose
from s3d.convert import _pipeline, stereo_settings
from s3d.io.video import decode_frames, probe_video
from s3d.pipeline import to_tensor
from s3d.stereo import nearness_to_disparity
from s3d.stereo.comfort import AutoConvergence, shape_nearness

VARIANTS = {"off": (0.0, 0), "foreground_scale=1": (1.0, 0), "edge_dilation=2": (0.0, 2), "edge_dilation=4": (0.0, 4), "both (1, 2)": (1.0, 2)}


def holes(d: torch.Tensor, near: torch.Tensor) -> tuple[float, float]:
    """Forward splat of the left eye by ``d`` (right(x - d) = left(x)): uncovered share, and the share of those
    next to the near side of a depth edge. ``d, near (1, 1, H, W)``."""
    w = d.shape[-1]
    x = torch.arange(w).view(1, 1, 1, w).expand_as(d)
    target = (x - d).round().long().clamp(0, w - 1)
    covered = torch.zeros_like(d).scatter_(-1, target, 1.0)
    hole = covered == 0
    # near side of an edge, in the target view: a pixel whose nearness exceeds a neighbour's within 2 px by 0.2
    near_t = torch.zeros_like(near).scatter_reduce_(-1, target, near, reduce="amax")
    neighbour_min = -F.max_pool2d(-near_t, (1, 5), stride=1, padding=(0, 2))
    near_edge = (near_t - neighbour_min) > 0.2
    hole_near = hole & F.max_pool2d(near_edge.float(), (1, 5), stride=1, padding=(0, 2)).bool()
    return float(hole.float().mean()), float(hole_near.float().sum() / hole.float().sum().clamp(min=1))


def main(clip: Path, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cut = cut_clip(clip, Path(tmp) / "cut.mkv", seconds)
        cfg = compose("convert", [f"input={cut}"])
        pipeline = _pipeline(cfg, video=True)
        frames = [f.rgb for f in decode_frames(probe_video(cut))]
    nears, planes = [], []
    follow = AutoConvergence(0.9)
    with torch.inference_mode():
        for i in range(0, len(frames), 4):
            x = to_tensor(torch.from_numpy(np.stack(frames[i : i + 4])), torch.device("cpu"))
            nears.append(pipeline.nearness(x))
            planes += follow(nears[-1], x)
    near = torch.cat(nears)
    s = stereo_settings(cfg)
    print(f"{clip.name}: first {seconds:g} s, {len(near)} frames, divergence {s.divergence}, convergence {s.convergence}")
    for name, (scale, pixels) in {**VARIANTS, "auto_convergence": (0.0, 0)}.items():
        shaped = shape_nearness(near, scale, pixels)
        if name == "auto_convergence":  # each frame's plane: the subject's nearness, smoothed (0.9), reset at cuts
            d = torch.cat([nearness_to_disparity(shaped[i : i + 1], near.shape[-1], s.divergence, c) for i, c in enumerate(planes)])
            print(
                f"auto convergence: screen plane mean {np.mean(planes):.3f}, {min(planes):.3f}-{max(planes):.3f}, mean change {np.mean(np.abs(np.diff(planes))):.4f} a frame"
            )
        else:
            d = nearness_to_disparity(shaped, near.shape[-1], s.divergence, s.convergence)
        flicker = float((d[1:] - d[:-1]).abs().mean())
        h = [holes(d[i : i + 1], shaped[i : i + 1]) for i in range(0, len(d), 4)]
        print(
            f"{name:20s} flicker {flicker:.3f} px   holes {100 * np.mean([a for a, _ in h]):.2f}%   on the near side {100 * np.mean([b for _, b in h]):.1f}%   "
            f"disparity range {float(d.max() - d.min()):.1f} px"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 3.0)
