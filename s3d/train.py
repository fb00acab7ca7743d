"""The training job: compose data, depth, model, loss, trainer and logger from the config, then fit."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from s3d.depth import build_depth
from s3d.module import ViewSynthesisModule

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig) -> ViewSynthesisModule:
    return ViewSynthesisModule(instantiate(cfg.model), build_depth(cfg.depth), instantiate(cfg.loss), **cfg.optim)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and return the final logged metrics (what a Hydra sweep compares)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    checkpoints = ModelCheckpoint(dirpath=f"{cfg.paths.output_dir}/checkpoints", monitor="val/psnr", mode="max", save_last=True, filename="best-{epoch}")
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=instantiate(cfg.logger), callbacks=[checkpoints])
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    log.info("final metrics: %s", metrics)
    return metrics
