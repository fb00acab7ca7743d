"""Convert a 2D video or photo to stereo 3D: ``python convert.py input=movie.mp4 [layout=half_sbs ...]``;
``python convert.py --help`` lists every option."""

from s3d import cli
from s3d.convert import convert


def main() -> None:
    for path in cli.main("convert", convert) or []:
        print(path)


if __name__ == "__main__":
    main()
