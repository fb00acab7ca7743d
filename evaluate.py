"""Measure view quality on real stereo pairs: ``python evaluate.py [pairs=DIR] [output=FILE.json] [save_images=DIR]``."""

import hydra
from omegaconf import DictConfig

import s3d.config  # noqa: F401  (registers the config resolvers)
from s3d import cli
from s3d.evaluate import evaluate, format_table


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    print(format_table(cli.run(evaluate, cfg)))


if __name__ == "__main__":
    main()
