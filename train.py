"""Train a view-synthesis model: ``python train.py [model=warp] [loss.ssim=0.5] [-m loss.ssim=0,0.5,1]``."""

import hydra
from omegaconf import DictConfig

import s3d.config  # noqa: F401  (registers the config resolvers)
from s3d import cli
from s3d.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = cli.run(train, cfg)
    return metrics.get("val/psnr")


if __name__ == "__main__":
    main()
