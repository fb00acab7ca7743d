"""Convert a 2D video or photo to stereo 3D: ``python convert.py input=movie.mp4 [layout=half_sbs ...]``."""

import hydra
from omegaconf import DictConfig

import s3d.config  # noqa: F401  (registers the config resolvers)
from s3d import cli
from s3d.convert import convert


@hydra.main(version_base="1.3", config_path="conf", config_name="convert")
def main(cfg: DictConfig) -> None:
    for path in cli.run(convert, cfg):
        print(path)


if __name__ == "__main__":
    main()
