#!/usr/bin/env bash
# Issue 24's measurement: every fill (smooth, stretch, mirror, learned) through the conversion's own eye synthesis
# from the PSMNet stereo teacher's disparity exactly, on three kinds of real pairs no fill was trained on:
# the Middlebury evaluation pairs (indoor scenes), kitti2012_eval_only (driving, outdoor) and the three stereo
# photos of ../shared/data/stereo_photos that the rectification check accepts (a camera with a 3D lens, a 3D
# camera, a scanned stereograph: conf/data/fill_patches.yaml keeps them out of the fill's training), cut and aligned
# as s3d/data/sources.py does for training. Writes results/evaluation_fill.json, results/evaluation_fill_kitti.json
# and results/evaluation_fill_photos.json; needs weights/psmnet_kitti2015.safetensors (make weights teacher=psmnet).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
views=outputs/fill_views/stereo_photos
photos=(Panasonic-DMC-GX8.mpo calf-left-right.jpg stereograph.left-right.jpg)
folders=$($py - "$views" "${photos[@]}" <<'PY'
import sys
from pathlib import Path
from s3d.data.sources import clean_stem, stereo_photo_views
views = Path(sys.argv[1])
srcs = [Path("../shared/data/stereo_photos") / name for name in sys.argv[2:]]
print(",".join(str(stereo_photo_views(p, views / clean_stem(p))) for p in srcs))
PY
)
export HF_HUB_OFFLINE=1
run() { $py evaluate.py models.s3d_lite0=null models.seed=null "$@"; }
run output=results/evaluation_fill.json
run pairs=../shared/data/stereo_pairs/kitti2012_eval_only output=results/evaluation_fill_kitti.json
run "pairs=[$folders]" output=results/evaluation_fill_photos.json
