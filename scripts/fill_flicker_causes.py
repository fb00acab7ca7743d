"""Why the learned fill flickers more than ``smooth`` on still shots: make bench's fill flicker (s3d.bench.fill_flicker,
the mean change of the pixels disoccluded in two consecutive frames) on the same stillest frames of each clip, with
one cause taken away at a time:

- ``as_bench``: as make bench measures it (the depth as a conversion makes it: temporal smoothing, key frames);
- ``fp32``: the learned fill in fp32 rather than bf16 autocast;
- ``whole_frame``: fp32, every window the whole frame (no window edges that move with the holes);
- ``depth_frozen``: the first frame's disparity for every frame (the picture changes, the holes do not);
- ``picture_frozen``: the first frame for every frame, with each frame's own disparity (the depth's jitter alone).

python scripts/fill_flicker_causes.py [--out OUT.json] [--weights FILL.safetensors] [CLIP ...]
(defaults: outputs/fill/flicker_causes.json, the shipped fill, the bundled sample; depth=s3d_lite0)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from fill_oracle import whole_frame_windows  # this folder: the scripts run as python scripts/NAME.py

from s3d.bench import converted_temporal, fill_flicker, still_disparity, stillest
from s3d.config import PROJECT_ROOT, compose
from s3d.convert import depth_backend, stereo_settings
from s3d.depth.auto import resolve_depth
from s3d.export import load_fill_net
from s3d.io.video import decode_frames, probe_video
from s3d.pipeline import select_device

FRAMES = 150  # decoded from each clip's start; the stillest conf/bench.yaml still_frames of them are measured


def causes(clip: Path, conv, depth, net, still_frames: int) -> dict[str, dict[str, float]]:
    frames = np.stack([f.rgb for _, f in zip(range(FRAMES), decode_frames(probe_video(clip)))])
    start, _ = stillest(frames, still_frames)
    still = frames[start : start + still_frames]
    settings = stereo_settings(conv)
    d = still_disparity(still, depth, settings, int(conv.batch_size), *converted_temporal(conv, depth)).cpu()
    out = {"as_bench": fill_flicker(still, d, settings, net)}
    bf16, net.bf16 = net.bf16, False
    try:
        out["fp32"] = fill_flicker(still, d, settings, net)
        with whole_frame_windows():
            out["whole_frame"] = fill_flicker(still, d, settings, net)
    finally:
        net.bf16 = bf16
    out["depth_frozen"] = fill_flicker(still, d[:1].expand_as(d).contiguous(), settings, net)
    out["picture_frozen"] = fill_flicker(np.repeat(still[:1], len(still), 0), d, settings, net)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs/fill/flicker_causes.json")
    parser.add_argument("--weights", type=Path, default=None, help="the fill network (default: convert.yaml's fill_weights)")
    parser.add_argument("clips", nargs="*", type=Path, default=[PROJECT_ROOT / "samples/big_buck_bunny_432_433s_720p.webm"])
    args = parser.parse_args(argv)
    conv = compose("convert", ["depth=s3d_lite0"])
    if conv.threads:
        torch.set_num_threads(conv.threads)
    resolve_depth(conv, fetch=False)
    device = select_device(conv.device)
    depth = depth_backend(conv, device)
    net = load_fill_net(args.weights or PROJECT_ROOT / conv.fill_weights, device)
    results = {}
    for clip in args.clips:
        results[clip.name] = causes(clip, conv, depth, net, int(compose("bench").still_frames))
        for name, row in results[clip.name].items():
            print(f"{clip.name} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
