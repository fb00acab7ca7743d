#!/usr/bin/env bash
# Train the shipped learned fill (weights/s3d_fill.safetensors) on the CPU, as recorded in weights/MODEL_CARD.md:
# patches of the training split of ../shared/data (s3d/data/fill_patches.py: never the evaluation scenes, never
# kitti2012_eval_only, and the Pillow MPO photos held out for the photo evaluation) and of 2D frames of the Blender
# clip (CC BY 3.0). Needs weights/psmnet_kitti2015.safetensors (make weights teacher=psmnet).
# Usage: [SHIP=0] [CALM_STEPS=N] scripts/train_fill.sh [STEPS] [RUN_DIR] [OVERRIDE...]
# CALM_STEPS > 0 adds a second stage: N steps from the first stage's weights with the consistency term
# (fill_training.consistency=3, lr 5e-4), which calms the fill's flicker on video (weights/MODEL_CARD.md).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-5000}
run=${2:-outputs/fill/train}
extra=("${@:3}")
py=.venv/bin/python
mkdir -p "$run"
start=$(date +%s)
patches=outputs/fill/patches.safetensors
[ -f "$patches" ] || $py -m s3d.data.fill_patches "$patches" | tail -1 | tee "$run/patches.txt"
sha256sum "$patches" > "$run/data_sha256.txt"
$py train.py model=fill "data.path=$patches" optim.lr=2e-3 loss.vgg=0 export=last \
  trainer.max_epochs=100000 "trainer.max_steps=$steps" trainer.enable_progress_bar=false \
  hydra.run.dir="$run/train" "${extra[@]}"
final=$run/train
if [ "${CALM_STEPS:-0}" -gt 0 ]; then
  $py train.py model=fill "data.path=$patches" optim.lr=5e-4 loss.vgg=0 export=last \
    trainer.max_epochs=100000 "trainer.max_steps=$CALM_STEPS" trainer.enable_progress_bar=false \
    "init_weights=$run/train/model.safetensors" fill_training.consistency=3 hydra.run.dir="$run/calm" "${extra[@]}"
  final=$run/calm
fi
echo "wall time: $(( $(date +%s) - start )) s" | tee "$run/wall_time.txt"
[ "${SHIP:-1}" = 1 ] || exit 0
$py -m s3d.models.ship "$final/model.safetensors" weights/s3d_fill.safetensors
cp "$final/.hydra/config.yaml" weights/s3d_fill.train_config.yaml
$py - "$patches" > weights/s3d_fill.data_sources.txt <<'PY'
import collections, json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], "pt") as f:
    meta = f.metadata()
counts = collections.Counter(zip(json.loads(meta["names"]), json.loads(meta["kinds"])))
print("\n".join(f"{n}\t{k}\t{c}" for (n, k), c in sorted(counts.items())))
PY
