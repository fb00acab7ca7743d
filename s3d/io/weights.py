"""Weights files: their sha256, strict loading by tensor name and shape, and the project's exported models
(safetensors whose metadata holds the config that rebuilds them). Below every model and depth backend, so
``s3d.models`` and ``s3d.depth`` both load through here and neither needs the other to do it.

No pickled code is ever loaded: an exported file holds tensors plus a JSON config whose ``_target_``
classes must live in ``s3d.models`` / ``s3d.depth``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TypeVar

import torch.nn as nn
from hydra.utils import instantiate
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm import tqdm

from s3d.errors import S3DError
from s3d.io.atomic import atomic_output

M = TypeVar("M", bound=nn.Module)
ALLOWED_TARGETS = ("s3d.models.", "s3d.depth.")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_safetensors_into(module: M, path: Path) -> M:
    """Load a safetensors state dict into ``module`` (returned), refusing missing, unexpected or wrongly shaped tensors by name."""
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for a corrupt header
        raise S3DError(path, f"not a readable safetensors file ({err})") from None
    own = module.state_dict()
    for name, tensor in own.items():
        if name not in state:
            raise S3DError(path, f"missing tensor '{name}'")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise S3DError(path, f"tensor '{name}' has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise S3DError(path, f"unexpected tensor '{extra[0]}'")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return module


def download(url: str, dst: Path, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Stream ``url`` to ``dst``; a failed or short download leaves no ``dst`` and no temporary file."""
    with atomic_output(dst, overwrite=True) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0)
                got = 0
                with tqdm(total=total or None, unit="B", unit_scale=True, desc=dst.name, disable=quiet, file=sys.stderr) as bar:
                    while chunk := resp.read(1 << 20):
                        f.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as err:
            raise S3DError(url, f"download failed: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
            raise S3DError(url, f"download failed: {reason}") from None
        if total and got != total:
            raise S3DError(url, f"download incomplete: {got} of {total} bytes")
        if got == 0:
            raise S3DError(url, "download is empty")
    return dst


def check_target(cfg: dict, path: Path) -> dict:
    target = str(cfg.get("_target_", ""))
    if not target.startswith(ALLOWED_TARGETS):
        raise S3DError(path, f"refusing to build '{target}': only s3d.models / s3d.depth classes load from a weights file")
    return cfg


def read_metadata(path: Path) -> dict:
    if not path.is_file():
        raise S3DError(path, "no such file")
    if path.suffix != ".safetensors":
        raise S3DError(path, "convert takes an exported .safetensors model; export a Lightning .ckpt with python -m s3d.export")
    try:
        with safe_open(str(path), "pt") as f:
            meta = (f.metadata() or {}).get("s3d")
    except Exception as err:
        raise S3DError(path, f"not a readable safetensors file ({err})") from None
    if not meta:
        raise S3DError(path, "no s3d model config in this file's metadata")
    return json.loads(meta)


def build_exported_model(path: Path) -> tuple[nn.Module, dict]:
    """The model of an exported file with its weights (fp16 files load into fp32), and the file's metadata."""
    meta = read_metadata(path)
    model = instantiate(check_target(meta["model"], path))
    return load_weights(model, path), meta


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load an exported file's tensors into ``model`` (fp16 files into fp32); every tensor must fit."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # same names, other shapes (another width of the same model)
        raise S3DError(path, f"weights do not fit the model: {str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise S3DError(path, f"weights do not fit the model: missing {missing[:1]}, unexpected {unexpected[:1]}")
    return model
