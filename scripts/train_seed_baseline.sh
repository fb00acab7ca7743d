#!/usr/bin/env bash
# Train the article's `seed` model as the baseline of the results table: the same pairs as the default model
# (scripts/train_default.sh: the distillation data, without the teacher's labels, which it has no use for),
# its frozen depth input the default model's disparity.
# Usage: scripts/train_seed_baseline.sh [MINUTES] [DEFAULT_RUN_DIR] [RUN_DIR] [INIT_WEIGHTS]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
default_run=${2:-outputs/default_model}
run=${3:-outputs/seed_baseline}
init=${4:-null}
py=.venv/bin/python
view_roots=$(find "$default_run/views" -type d -name image_0 -printf "%h\n" | sort | paste -sd, -)
roots=$($py -c "from s3d.config import compose; print(','.join(compose('train', ['data=distill', 'paths.output_dir=/tmp']).data.roots))")
mkdir -p "$run"
start=$(date +%s)
$py train.py data=distill data.teacher=null model=seed depth=s3d_lite0 "data.roots=[$roots,$view_roots]" \
  loss.mse=1 loss.ssim=1 loss.vgg=0.1 optim.lr=3e-4 export=last "init_weights=$init" \
  trainer.max_epochs=1000 "trainer.max_time=00:00:${minutes}:00" trainer.enable_progress_bar=false \
  hydra.run.dir="$run/train"
echo "wall time: $(( $(date +%s) - start )) s" | tee "$run/wall_time.txt"
$py -m s3d.models.ship "$run/train/model.safetensors" weights/seed_baseline.safetensors
