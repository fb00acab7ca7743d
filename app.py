"""A local web page to convert videos and photos: ``python app.py [host=127.0.0.1] [port=7860]`` (or ``make app``)."""

import hydra
from omegaconf import DictConfig

import s3d.config  # noqa: F401  (registers the config resolvers)
from s3d import cli
from s3d.app import serve


@hydra.main(version_base="1.3", config_path="conf", config_name="app")
def main(cfg: DictConfig) -> None:
    cli.run(serve, cfg)


if __name__ == "__main__":
    main()
