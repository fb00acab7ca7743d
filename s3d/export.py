"""Trained models as safetensors with their config: what ``convert.py checkpoint=PATH`` loads.

No pickled code is ever loaded: Lightning checkpoints are read with ``torch.load(weights_only=True)``,
and the exported file holds tensors plus a JSON config whose ``_target_`` classes must live in
``s3d.models`` / ``s3d.depth``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import s3d.config  # noqa: F401  (the s3d_root resolver, for configs read back from a run)
from s3d.depth.base import DepthBackend, build_depth
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output

ALLOWED_TARGETS = ("s3d.models.", "s3d.depth.")


def _portable_depth(depth_cfg: dict) -> dict:
    """The depth config with its weights reduced to a file name, found again in ``weights_dir`` at load time."""
    depth_cfg = dict(depth_cfg)
    if depth_cfg.get("weights"):
        depth_cfg["weights"] = Path(depth_cfg["weights"]).name
    return depth_cfg


def export_model(model: nn.Module, model_cfg: DictConfig | dict, depth_cfg: DictConfig | dict, out: Path, extra: dict | None = None) -> Path:
    """Write ``model``'s weights and the configs that rebuild it (atomically)."""
    as_dict = lambda c: OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else dict(c)  # noqa: E731
    model_dict = as_dict(model_cfg)
    if model_dict.get("encoder_weights"):
        model_dict["encoder_weights"] = None  # the trained weights are in this file; the start point is not needed
    meta = {"model": model_dict, "depth": _portable_depth(as_dict(depth_cfg)), **(extra or {})}
    with atomic_output(out, overwrite=True) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp), metadata={"s3d": json.dumps(meta)})
    return out


def export_checkpoint(ckpt: Path, model_cfg, depth_cfg, out: Path) -> Path:
    """Export the ``model.*`` weights of a Lightning checkpoint, read with ``weights_only=True``."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as err:  # unpickling refusals come as several exception types
        raise S3DError(ckpt, f"not a loadable weights-only checkpoint ({str(err).splitlines()[0]})") from None
    model = instantiate(model_cfg)
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    return export_model(model, model_cfg, depth_cfg, out)


def _check_target(cfg: dict, path: Path) -> dict:
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
    model = instantiate(_check_target(meta["model"], path))
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


def load_model(path: Path, weights_dir: str | Path, device: torch.device) -> tuple[nn.Module, DepthBackend]:
    """Rebuild a model and its depth backend from an exported file; both frozen, in eval mode."""
    model, meta = build_exported_model(path)
    depth_cfg = _check_target(dict(meta["depth"]), path)
    if depth_cfg.get("weights"):
        depth_cfg["weights"] = str(Path(weights_dir) / depth_cfg["weights"])
    depth = build_depth(OmegaConf.create(depth_cfg), device)
    return model.eval().requires_grad_(False).to(device), depth


def main(argv: list[str] | None = None) -> int:
    """``python -m s3d.export CKPT RUN_DIR/.hydra/config.yaml OUT.safetensors``"""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(main.__doc__, file=sys.stderr)
        return 2
    ckpt, config, out = map(Path, args)
    try:
        cfg = OmegaConf.load(config)
        export_checkpoint(ckpt, cfg.model, cfg.depth, out)
    except S3DError as err:
        print(f"s3d: error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
