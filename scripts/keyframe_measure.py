"""What running the depth network on key frames only costs (README, Speed): lag on motion and flicker.

    python scripts/keyframe_measure.py [CLIP] [FRAMES] [OUT.json]

The bundled model (``depth=s3d_lite0``: its depth responds to the picture, which random weights of a bigger
network would not) runs on every frame of the first FRAMES frames of CLIP: the reference. Then the same
frames go through :class:`s3d.stereo.temporal.DepthReuse` with a key frame every 1, 2, 3, 4 frames (the
still-frame reuse off, to see the carrying alone) and, for comparison, the same key frames held instead of
blended (``carry=hold``). Per variant: the share of frames the network ran on; the disparity error against the reference
(mean |px|, on all frames and on the 10% with the most image change: the lag on motion); flicker (mean
|disparity change| between consecutive frames, px) over the clip and over its stillest 24 frames, after
the temporal smoothing convert.py applies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from s3d.config import PROJECT_ROOT, compose
from s3d.convert import depth_backend, stereo_settings, temporal_smoother
from s3d.io.video import decode_frames, probe_video
from s3d.pipeline import to_tensor
from s3d.stereo import nearness_to_disparity
from s3d.stereo.temporal import DepthReuse, thumbnail

CLIP = PROJECT_ROOT.parent / "shared" / "data" / "video_2d" / "blender_open_movies" / "big_buck_bunny_0_30s_720p.webm"
BATCH = 4


def run(frames: np.ndarray, cfg, depth, keys: DepthReuse | None, batch: int) -> torch.Tensor:
    """Disparity (px) of every frame as convert.py makes it (the network on ``keys``' key frames, or on all,
    then the temporal smoothing): ``(N, 1, H, W)`` float16, to keep a few hundred 720p maps in memory."""
    s = stereo_settings(cfg)
    smoother = temporal_smoother(cfg)
    out = []
    for i in range(0, len(frames), batch):
        x = to_tensor(torch.from_numpy(frames[i : i + batch]), torch.device("cpu"))
        near = depth(x) if keys is None else keys(depth, x)
        near = smoother(near, x) if smoother is not None else near
        out.append(nearness_to_disparity(near, x.shape[-1], s.divergence, s.convergence).half())
    return torch.cat(out)


def main(argv: list[str]) -> int:
    clip = Path(argv[0]) if argv and argv[0] else CLIP
    count = int(argv[1]) if len(argv) > 1 else 240
    out = Path(argv[2]) if len(argv) > 2 else PROJECT_ROOT / "results" / "keyframes.json"
    cfg = compose("convert", ["depth=s3d_lite0"])
    depth = depth_backend(cfg, torch.device("cpu"))
    frames = []
    for f in decode_frames(probe_video(clip)):
        frames.append(f.rgb)
        if len(frames) == count:
            break
    frames = np.stack(frames)
    thumbs = torch.cat([thumbnail(to_tensor(torch.from_numpy(frames[i : i + BATCH]), torch.device("cpu"))) for i in range(0, len(frames), BATCH)])
    change = torch.cat([torch.zeros(1), (thumbs[1:] - thumbs[:-1]).abs().flatten(1).mean(1)])
    moving = change >= change.quantile(0.9)
    still = int(change.unfold(0, 24, 1).mean(1)[1:].argmin()) + 1  # the stillest 24 frames
    results: dict = {"clip": clip.name, "frames": len(frames), "depth": "s3d_lite0", "stillest": [still, still + 23], "variants": {}}
    with torch.inference_mode():
        reference = run(frames, cfg, depth, None, BATCH).float()
        for interval in (1, 2, 3, 4):
            for carry in ("blend", "hold"):
                if interval == 1 and carry == "hold":
                    continue
                keys = DepthReuse(threshold=0.0, max_run=1, interval=interval, scene_cut=cfg.temporal.scene_cut, carry=carry)
                d = run(frames, cfg, depth, keys, -(-BATCH // interval) * interval).float()
                err = (d - reference).abs().flatten(1).mean(1)
                flick = (d[1:] - d[:-1]).abs().flatten(1).mean(1)
                name = f"every {interval} ({carry})"
                results["variants"][name] = {
                    "network_share": keys.computed / len(frames),
                    "error_px": float(err.mean()),
                    "error_px_moving": float(err[moving].mean()),
                    "flicker_px": float(flick.mean()),
                    "flicker_px_still": float(flick[still : still + 23].mean()),
                }
                print(name, json.dumps(results["variants"][name]), flush=True)
                del d
    ref_flick = (reference[1:] - reference[:-1]).abs().flatten(1).mean(1)
    results["reference"] = {"flicker_px": float(ref_flick.mean()), "flicker_px_still": float(ref_flick[still : still + 23].mean())}
    print("every frame", json.dumps(results["reference"]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
