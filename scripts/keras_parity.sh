#!/usr/bin/env bash
# Compare the DenseDepth port with Keras on a real photo. TensorFlow goes into a throwaway venv outside the repo.
# Usage: scripts/keras_parity.sh [PHOTO]   (default: a Middlebury photo from ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
photo=${1:-../shared/data/stereo_pairs/middlebury_v3_trainingQ/image_0/Teddy.png}
tfvenv=${S3D_TF_VENV:-${TMPDIR:-/tmp}/s3d-tf-venv}
out=$(mktemp -d)
[ -x "$tfvenv/bin/python" ] || { python3 -m venv "$tfvenv" && "$tfvenv/bin/pip" install -q tensorflow-cpu pillow h5py; }
"$tfvenv/bin/python" scripts/keras_parity.py keras "$out" "$photo"
.venv/bin/python scripts/keras_parity.py compare "$out"
rm -rf "$out"
