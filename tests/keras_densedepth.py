"""A DenseDepth ``.h5`` in the Keras layout, written with h5py, and a forward pass computed from its raw arrays.

The reference works on Keras' own tensors (NHWC activations, HWIO kernels, gamma/beta/mean/variance)
with plain NumPy, independently of the converter, so a wrong transpose or a swapped BatchNorm tensor in
the converter shows up as a different output.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

Layers = dict[str, dict[str, np.ndarray]]


def make_layers(blocks=(2, 3, 2, 2), growth=8, init=16, bn_size=2, width=32, seed=0, sep="/") -> Layers:
    """Random weights for every Keras layer of a (small) DenseDepth, named as Keras names them."""
    rng = np.random.default_rng(seed)
    layers: Layers = {}

    def conv(name, k, cin, cout, bias):
        w = {"kernel": rng.normal(0, np.sqrt(2.0 / (k * k * cin)), (k, k, cin, cout)).astype(np.float32)}
        if bias:
            w["bias"] = rng.normal(0, 0.05, cout).astype(np.float32)
        layers[name] = w

    def bn(name, c):
        layers[name] = {
            "gamma": rng.uniform(0.5, 1.5, c).astype(np.float32),
            "beta": rng.normal(0, 0.1, c).astype(np.float32),
            "moving_mean": rng.normal(0, 0.1, c).astype(np.float32),
            "moving_variance": rng.uniform(0.5, 2.0, c).astype(np.float32),
        }

    conv(f"conv1{sep}conv", 7, 3, init, False)
    bn(f"conv1{sep}bn", init)
    c = init
    skips = [init, init]
    for b, n in enumerate(blocks, start=2):
        for l in range(1, n + 1):
            bn(f"conv{b}_block{l}_0_bn", c)
            conv(f"conv{b}_block{l}_1_conv", 1, c, bn_size * growth, False)
            bn(f"conv{b}_block{l}_1_bn", bn_size * growth)
            conv(f"conv{b}_block{l}_2_conv", 3, bn_size * growth, growth, False)
            c += growth
        if b < 5:
            bn(f"pool{b}_bn", c)
            conv(f"pool{b}_conv", 1, c, c // 2, False)
            c //= 2
            skips.append(c)
    bn("bn", c)
    conv("conv2", 1, c, width, True)
    cin = width
    for u, skip in zip(range(1, 5), [skips[3], skips[2], skips[1], skips[0]]):
        conv(f"up{u}_convA", 3, cin + skip, width // 2**u, True)
        conv(f"up{u}_convB", 3, width // 2**u, width // 2**u, True)
        cin = width // 2**u
    conv("conv3", 3, cin, 1, True)
    return layers


def write_h5(path: Path, layers: Layers, eps: float = 1.001e-5, keras3_names: bool = False) -> Path:
    """Save as Keras' ``model.save`` does: ``model_weights/<layer>/<layer>/<weight>:0`` with name attributes."""
    config = {"class_name": "Model", "config": {"layers": []}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        root = f.create_group("model_weights")
        names = []
        for layer, tensors in layers.items():
            names.append(layer.encode())
            g = root.create_group(layer)
            weight_names = []
            for short, array in tensors.items():
                wn = f"{layer}/{short}" + ("" if keras3_names else ":0")
                g.create_dataset(wn, data=array)
                weight_names.append(wn.encode())
            g.attrs["weight_names"] = weight_names
            kind = "BatchNormalization" if "gamma" in tensors else "Conv2D"
            config["config"]["layers"].append({"class_name": kind, "config": {"name": layer, "epsilon": eps}})
        root.attrs["layer_names"] = names
        f.attrs["model_config"] = json.dumps(config).encode()
    return path


# --- the reference forward pass, NHWC, float64 -------------------------------------------------------


def _get(layers: Layers, name: str) -> dict[str, np.ndarray]:
    return layers.get(name) or layers[name.replace("/", "_")]


def _conv(x, w, stride=1, pad=None):
    k = w["kernel"].astype(np.float64)
    kh, kw, _, cout = k.shape
    p = (kh - 1) // 2 if pad is None else pad
    x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    n, h, wd, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, ho, wo, cout))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :] @ k[i, j]
    return out + w["bias"] if "bias" in w else out


def _bn(x, w, eps):
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + eps) * w["gamma"] + w["beta"]


def _relu(x):
    return np.maximum(x, 0)


def _resize_align_corners(x, h, w):
    def axis(n_in, n_out):
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    lo, hi, t = axis(x.shape[1], h)
    x = x[:, lo] * (1 - t)[None, :, None, None] + x[:, hi] * t[None, :, None, None]
    lo, hi, t = axis(x.shape[2], w)
    return x[:, :, lo] * (1 - t)[None, None, :, None] + x[:, :, hi] * t[None, None, :, None]


def reference_forward(layers: Layers, image: np.ndarray, eps: float = 1.001e-5) -> np.ndarray:
    """``(N, H, W, 3)`` in ``[0, 1]`` -> ``(N, H/2, W/2, 1)``, the Keras model's output, from raw arrays."""
    x = _relu(_bn(_conv(image.astype(np.float64), _get(layers, "conv1/conv"), stride=2, pad=3), _get(layers, "conv1/bn"), eps))
    skip_relu = x
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # ZeroPadding2D + MaxPool 3/2; inputs are >= 0
    ho, wo = (xp.shape[1] - 3) // 2 + 1, (xp.shape[2] - 3) // 2 + 1
    x = np.max([xp[:, i : i + 2 * (ho - 1) + 1 : 2, j : j + 2 * (wo - 1) + 1 : 2] for i in range(3) for j in range(3)], axis=0)
    skips = {"pool1": x}
    b = 2
    while f"conv{b}_block1_1_conv" in layers:
        l = 1
        while f"conv{b}_block{l}_1_conv" in layers:
            y = _relu(_bn(x, layers[f"conv{b}_block{l}_0_bn"], eps))
            y = _relu(_bn(_conv(y, layers[f"conv{b}_block{l}_1_conv"]), layers[f"conv{b}_block{l}_1_bn"], eps))
            x = np.concatenate([x, _conv(y, layers[f"conv{b}_block{l}_2_conv"])], axis=-1)
            l += 1
        if f"pool{b}_bn" in layers:
            x = _conv(_relu(_bn(x, layers[f"pool{b}_bn"], eps)), layers[f"pool{b}_conv"])
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
            skips[f"pool{b}_pool"] = x
        b += 1
    x = _relu(_bn(x, layers["bn"], eps))
    x = _conv(x, layers["conv2"])
    for u, skip in zip(range(1, 5), [skips["pool3_pool"], skips["pool2_pool"], skips["pool1"], skip_relu]):
        x = _resize_align_corners(x, skip.shape[1], skip.shape[2])
        x = np.concatenate([x, skip], axis=-1)
        for ab in "AB":
            x = _conv(x, layers[f"up{u}_conv{ab}"])
            x = np.where(x > 0, x, 0.2 * x)
    return _conv(x, layers["conv3"])
