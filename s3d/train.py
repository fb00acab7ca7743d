"""The training job: compose data, depth, model, loss, trainer and logger from the config, then fit."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from s3d.depth import build_depth
from s3d.errors import S3DError
from s3d.export import export_checkpoint, export_model
from s3d.io.weights import load_weights, read_metadata
from s3d.models.common import ViewModel
from s3d.models.fill import FillNet
from s3d.module import FillModule, ViewSynthesisModule

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> ViewSynthesisModule | FillModule:
    """The model (from ``init_weights`` if set), the depth backend it reads (none for a model that is its own
    depth, or for the learned fill: the config's default depth is not even built for them), the loss and the
    optimiser settings."""
    model: ViewModel | FillNet = instantiate(cfg.model)
    if cfg.init_weights:  # continue from an exported model (its optimiser state is not kept; ckpt_path resumes fully)
        read_metadata(Path(cfg.init_weights))  # a missing or foreign file is refused here in one line
        load_weights(model, Path(cfg.init_weights))
    if isinstance(model, FillNet):
        return FillModule(model, instantiate(cfg.loss), **cfg.optim, **cfg.get("fill_training", {}))
    depth = build_depth(cfg.depth) if model.use_depth else None
    return ViewSynthesisModule(model, depth, instantiate(cfg.loss), **cfg.optim)


def depth_config(cfg: DictConfig, model: ViewModel | FillNet) -> DictConfig | None:
    """The depth config an exported model needs to convert again: none for a model that is its own depth, nor
    for the learned fill (it reads the depth of whatever conversion runs it)."""
    return cfg.depth if isinstance(model, ViewModel) and model.use_depth else None


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and return the final logged metrics (what a Hydra sweep compares)."""
    if cfg.export not in ("best", "last"):
        raise S3DError(None, f"export must be best or last, got '{cfg.export}'")
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    checkpoints = ModelCheckpoint(dirpath=f"{cfg.paths.output_dir}/checkpoints", monitor="val/psnr", mode="max", save_last=True, filename="best-{epoch}")
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=instantiate(cfg.logger), callbacks=[checkpoints])
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if not trainer.is_global_zero:  # under DDP, one process writes the exported model
        return metrics
    out = Path(cfg.paths.output_dir) / "model.safetensors"
    if cfg.export == "best" and checkpoints.best_model_path:
        export_checkpoint(Path(checkpoints.best_model_path), cfg.model, depth_config(cfg, module.model), out)
    else:  # the weights as training left them (also what fast_dev_run has: it saves no checkpoint)
        export_model(module.model, cfg.model, depth_config(cfg, module.model), out)
    log.info("model for convert.py: %s", out)
    log.info("final metrics: %s", metrics)
    return metrics
