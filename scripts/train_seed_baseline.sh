#!/usr/bin/env bash
# Train the article's `seed` model as the baseline of the results table: same data and CPU budget as the
# default model (scripts/train_default.sh), its frozen depth input the default model's disparity.
# Usage: scripts/train_seed_baseline.sh [MINUTES] [DEFAULT_RUN_DIR] [RUN_DIR] [INIT_WEIGHTS]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
default_run=${2:-outputs/default_model}
run=${3:-outputs/seed_baseline}
init=${4:-null}
py=.venv/bin/python
vr_roots=$(ls -d "$default_run"/vr_frames/*/ | sed 's#/$##' | paste -sd, -)
start=$(date +%s)
$py train.py data=train_split model=seed depth=s3d_lite0 \
  "data.roots=[\${s3d_root:}/../shared/data/stereo_pairs/middlebury_v3_trainingQ,\${s3d_root:}/../shared/data/stereo_pairs/igev_middlebury2014_fullres,\${s3d_root:}/../shared/data/stereo_pairs/more_middlebury,\${s3d_root:}/../shared/data/stereo_pairs/mpo_pillow,\${s3d_root:}/../shared/data/stereo_pairs/pandora_middlebury2003_cones,${vr_roots}]" \
  loss.mse=1 loss.ssim=1 loss.vgg=0.1 optim.lr=3e-4 export=last "init_weights=$init" \
  trainer.max_epochs=1000 "trainer.max_time=00:00:${minutes}:00" trainer.enable_progress_bar=false \
  hydra.run.dir="$run/train"
echo "wall time: $(( $(date +%s) - start )) s" | tee "$run/wall_time.txt"
$py -m s3d.models.ship "$run/train/model.safetensors" weights/seed_baseline.safetensors
