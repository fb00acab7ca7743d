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
from safetensors.torch import save_file

import s3d.config  # noqa: F401  (the s3d_root resolver, for configs read back from a run)
from s3d.depth.base import DepthBackend, build_depth, cpu_has_bf16
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.weights import build_exported_model, check_target, load_weights, read_metadata  # noqa: F401  (re-exported)
from s3d.models.common import ViewModel
from s3d.models.fill import FillNet


def _portable_depth(depth_cfg: dict) -> dict:
    """The depth config with its weights reduced to a file name, found again in ``weights_dir`` at load time."""
    depth_cfg = dict(depth_cfg)
    if depth_cfg.get("weights"):
        depth_cfg["weights"] = Path(depth_cfg["weights"]).name
    return depth_cfg


def export_model(model: nn.Module, model_cfg: DictConfig | dict, depth_cfg: DictConfig | dict | None, out: Path, extra: dict | None = None) -> Path:
    """Write ``model``'s weights and the configs that rebuild it (atomically); ``depth_cfg`` None for a
    model that is its own depth."""
    as_dict = lambda c: OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else dict(c)  # noqa: E731
    model_dict = as_dict(model_cfg)
    if model_dict.get("encoder_weights"):
        model_dict["encoder_weights"] = None  # the trained weights are in this file; the start point is not needed
    meta = {"model": model_dict, "depth": None if depth_cfg is None else _portable_depth(as_dict(depth_cfg)), **(extra or {})}
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


def load_model(path: Path, weights_dir: str | Path, device: torch.device) -> tuple[ViewModel, DepthBackend | None]:
    """Rebuild a model and its depth backend (None for a model that is its own depth) from an exported
    file; both frozen, in eval mode."""
    model, meta = build_exported_model(path)
    model = model.eval().requires_grad_(False).to(device)
    if not model.use_depth or not meta.get("depth"):
        return model, None
    depth_cfg = check_target(dict(meta["depth"]), path)
    if depth_cfg.get("weights"):
        depth_cfg["weights"] = str(Path(weights_dir) / depth_cfg["weights"])
    return model, build_depth(OmegaConf.create(depth_cfg), device)


def load_fill_net(path: Path, device: torch.device) -> FillNet:
    """The learned fill of an exported file (``fill_weights=``), frozen, in eval mode, on ``device``; on a CPU that
    computes bf16 natively it runs under bf16 autocast (twice as fast there; the README's fill figures use it).
    On the CPU its weights are channels-last, which its convolutions then run in (a quarter faster, `make bench`)."""
    if not path.is_file():
        raise S3DError(path, "no such fill network (fill_weights=)")
    net, _ = build_exported_model(path)
    if not isinstance(net, FillNet):
        raise S3DError(path, f"not a fill network but a {type(net).__name__}")
    net.bf16 = device.type == "cpu" and cpu_has_bf16()
    net = net.eval().requires_grad_(False).to(device)
    return net.to(memory_format=torch.channels_last) if device.type == "cpu" else net


def export_run(ckpt: Path, config: Path, out: Path) -> Path:
    """Export a checkpoint of a training run with the model and depth configs of the run's ``config.yaml``."""
    if not config.is_file():
        raise S3DError(config, "no such run config (RUN_DIR/.hydra/config.yaml)")
    cfg = OmegaConf.load(config)
    return export_checkpoint(ckpt, cfg.model, cfg.get("depth"), out)


def main(argv: list[str] | None = None) -> int:
    """``python -m s3d.export CKPT RUN_DIR/.hydra/config.yaml OUT.safetensors``"""
    from s3d import cli

    print(cli.file_tool("python -m s3d.export", "Export a Lightning checkpoint of train.py as model.safetensors.", export_run, ("ckpt", "config", "out"), argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
