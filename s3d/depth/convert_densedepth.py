"""Convert the DenseDepth Keras weights (``nyu.h5``) to safetensors: ``python -m s3d.depth.convert_densedepth IN.h5 OUT.safetensors``.

The ``.h5`` is read with h5py **by layer name**, never by order. Every Keras tensor must map to one
PyTorch tensor of the right shape and every PyTorch parameter must be filled; anything else is refused
with one line naming the tensor. Keras 2 (``conv1/conv``) and Keras 3 (``conv1_conv``) layer names are
both read. The architecture (block sizes, growth rate, decoder width, BatchNorm epsilon) comes from
the file, and is written into the safetensors metadata and a ``.json`` beside it.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

from s3d import cli
from s3d.depth.densedepth import (
    KERAS_BN_EPS,
    DenseDepthConfig,
    DenseDepthNet,
    count_dense_layers,
)
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.weights import file_sha256

BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
CONV = {"kernel": "weight", "bias": "bias"}


def _torch_prefix(layer: str) -> tuple[str, dict[str, str]] | None:
    """Keras layer name (``/`` already turned into ``_``) -> (PyTorch module prefix, weight-name map)."""
    rules = [
        (r"conv1_conv", "encoder.conv0", CONV),
        (r"conv1_bn", "encoder.norm0", BN),
        (r"conv(\d+)_block(\d+)_0_bn", "encoder.denseblock{b}.denselayer{l}.norm1", BN),
        (r"conv(\d+)_block(\d+)_1_conv", "encoder.denseblock{b}.denselayer{l}.conv1", CONV),
        (r"conv(\d+)_block(\d+)_1_bn", "encoder.denseblock{b}.denselayer{l}.norm2", BN),
        (r"conv(\d+)_block(\d+)_2_conv", "encoder.denseblock{b}.denselayer{l}.conv2", CONV),
        (r"pool(\d+)_bn", "encoder.transition{b}.norm", BN),
        (r"pool(\d+)_conv", "encoder.transition{b}.conv", CONV),
        (r"bn", "encoder.norm5", BN),
        (r"conv2", "decoder.conv2", CONV),
        (r"up(\d)_conv([AB])", "decoder.up{u}.conv{ab}", CONV),
        (r"conv3", "decoder.conv3", CONV),
    ]
    for pattern, template, names in rules:
        m = re.fullmatch(pattern, layer)
        if not m:
            continue
        g = m.groups()
        if template.startswith("encoder.denseblock") or template.startswith("encoder.transition"):
            # Keras numbers dense blocks conv2..conv5 and transitions pool2..pool4; torchvision from 1.
            return template.format(b=int(g[0]) - 1, l=g[1] if len(g) > 1 else ""), names
        if template.startswith("decoder.up"):
            return template.format(u=g[0], ab=g[1]), names
        return template, names
    return None


def _weights_root(f: h5py.File, path: Path) -> h5py.Group:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in root.attrs:
        raise S3DError(path, "not a Keras weights file: no 'layer_names' attribute")
    return root


def _decode(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def read_keras_tensors(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """``{layer: {weight: array}}`` by layer name (``/`` -> ``_``), and each BatchNorm layer's epsilon."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise S3DError(path, f"not an HDF5 file ({err})") from None
    with f:
        root = _weights_root(f, path)
        layers: dict[str, dict[str, np.ndarray]] = {}
        for raw_layer in root.attrs["layer_names"]:
            layer = _decode(raw_layer)
            group = root[layer]
            names = [_decode(n) for n in group.attrs.get("weight_names", [])]
            if not names:
                continue
            tensors = {}
            for name in names:
                short = name.split("/")[-1].split(":")[0]
                tensors[short] = np.asarray(group[name])
            layers[layer.replace("/", "_")] = tensors
        eps = {}
        config = f.attrs.get("model_config")
        if config is not None:
            for layer in json.loads(_decode(config))["config"]["layers"]:
                if layer["class_name"] == "BatchNormalization":
                    eps[layer["config"]["name"].replace("/", "_")] = float(layer["config"]["epsilon"])
    return layers, eps


def infer_config(layers: dict[str, dict[str, np.ndarray]], path: Path, bn_eps: float) -> DenseDepthConfig:
    """Read the architecture from layer names and kernel shapes."""

    def kernel(name: str) -> np.ndarray:
        if name not in layers or "kernel" not in layers[name]:
            raise S3DError(path, f"missing tensor '{name}/kernel'")
        return layers[name]["kernel"]

    # Keras numbers the dense blocks conv2..conv5.
    blocks = count_dense_layers(lambda b, n: f"conv{b + 1}_block{n}_1_conv" in layers)
    if len(blocks) != 4:
        raise S3DError(path, f"expected 4 dense blocks (conv2..conv5), found {len(blocks)}")
    growth = kernel("conv2_block1_2_conv").shape[-1]
    return DenseDepthConfig(
        block_config=blocks,
        growth_rate=int(growth),
        num_init_features=int(kernel("conv1_conv").shape[-1]),
        bn_size=int(kernel("conv2_block1_1_conv").shape[-1] // growth),
        decoder_width=int(kernel("conv2").shape[-1]),
        bn_eps=bn_eps,
    )


def convert_state(path: Path) -> tuple[dict[str, torch.Tensor], DenseDepthConfig]:
    layers, eps = read_keras_tensors(path)
    eps_values = set(eps.values()) or {KERAS_BN_EPS}
    if len(eps_values) != 1:
        raise S3DError(path, f"BatchNorm layers disagree on epsilon: {sorted(eps_values)}")
    cfg = infer_config(layers, path, eps_values.pop())
    expected = {k: v for k, v in DenseDepthNet(cfg).state_dict().items() if not k.endswith("num_batches_tracked")}
    state: dict[str, torch.Tensor] = {}
    for layer, tensors in layers.items():
        target = _torch_prefix(layer)
        if target is None:
            raise S3DError(path, f"unexpected layer '{layer}' with weights")
        prefix, names = target
        for short, array in tensors.items():
            if short not in names:
                raise S3DError(path, f"unexpected tensor '{layer}/{short}'")
            key = f"{prefix}.{names[short]}"
            t = torch.from_numpy(np.ascontiguousarray(array)).float()
            if short == "kernel":
                t = t.permute(3, 2, 0, 1).contiguous()  # Keras HWIO -> PyTorch OIHW
            if key not in expected:
                raise S3DError(path, f"unexpected tensor '{layer}/{short}' (no '{key}' in the model)")
            if tuple(t.shape) != tuple(expected[key].shape):
                raise S3DError(path, f"tensor '{layer}/{short}' has shape {tuple(array.shape)}, which does not fit '{key}' {tuple(expected[key].shape)}")
            state[key] = t
    missing = sorted(set(expected) - set(state))
    if missing:
        raise S3DError(path, f"missing tensor for '{missing[0]}' ({len(missing)} missing in all)")
    for key in expected:
        if key.endswith("running_var"):
            state[key.replace("running_var", "num_batches_tracked")] = torch.zeros((), dtype=torch.long)
    return state, cfg


def convert(src: Path, dst: Path) -> DenseDepthConfig:
    """Convert ``src`` (.h5) to ``dst`` (.safetensors) and ``dst.with_suffix('.json')``, each written atomically."""
    state, cfg = convert_state(src)
    meta = {"architecture": "densedepth", "config": asdict(cfg), "source": src.name, "source_sha256": file_sha256(src)}
    with atomic_output(dst, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata={"s3d": json.dumps(meta)})
    with atomic_output(dst.with_suffix(".json"), overwrite=True) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Convert DenseDepth Keras weights (nyu.h5) to safetensors.")
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args(argv)

    def job() -> DenseDepthConfig:
        if not args.src.is_file():
            raise S3DError(args.src, "no such file")
        return convert(args.src, args.dst)

    print(f"{args.dst}: DenseDepth {cli.run(job)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
