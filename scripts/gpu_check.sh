#!/usr/bin/env bash
# The CUDA path checked and measured in one command (issue 25), on a machine with an NVIDIA GPU and PyTorch
# already installed, without network:
#
#   bash scripts/gpu_check.sh [WHEELHOUSE]
#
# 1. installs what the project needs and is missing, from the wheels in WHEELHOUSE (default: wheelhouse/;
#    made on a machine with the same Python by `make wheelhouse`); torch is never touched;
# 2. runs the tests that skip without CUDA (pytest -m cuda);
# 3. scripts/gpu_bench.py: make bench's figures on a 1080p and a 4K clip made on the spot, Depth Anything V2
#    Small (random weights of the same cost) and the bundled model, fp16, compile on and off, batch sizes, and
#    the x264 encode floor in the same run -> bench/results_cuda.json (the keys of bench/results.json).
# Aimed at under 8 minutes on an H200; each step prints its time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WHEELS=${1:-wheelhouse}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
t0=$(date +%s)
step() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }

step "GPU and PyTorch"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: this script measures the CUDA path'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
command -v ffmpeg >/dev/null || echo "no ffmpeg: the encode floor is skipped (n/a)"

step "dependencies"
missing=$($PY - <<'PYEOF'
import importlib.util
need = {"pytorch_lightning": "pytorch-lightning", "hydra": "hydra-core", "kornia": "kornia", "timm": "timm", "av": "av",
        "wandb": "wandb", "safetensors": "safetensors", "tqdm": "tqdm", "numba": "numba", "PIL": "pillow", "h5py": "h5py",
        "huggingface_hub": "huggingface_hub", "pytest": "pytest", "hypothesis": "hypothesis"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$missing" ]; then
  test -d "$WHEELS" || { echo "missing: $missing; no wheel folder $WHEELS (make wheelhouse on a machine with internet)"; exit 1; }
  $PY -m pip install -q --no-index --find-links "$WHEELS" $missing
fi

step "CUDA tests"
$PY -m pytest -q -m cuda -p no:cacheprovider tests

step "measurements"
$PY scripts/gpu_bench.py --out bench/results_cuda.json

step "done"
