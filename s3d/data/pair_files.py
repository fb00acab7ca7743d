"""Where the two eyes of stereo pairs are on disk: the folder layouts :mod:`s3d.data.pairs` trains on and
:mod:`s3d.data.teacher` labels (below both, so neither imports the other's module to find them)."""

from __future__ import annotations

from pathlib import Path

from s3d.errors import S3DError
from s3d.io.image import IMAGE_SUFFIXES

# Left/right file-name endings in one pair's folder: left/right, im0/im1, motorcycle_left/..., aloeL/aloeR.
PAIR_ENDINGS = (("left", "right"), ("im0", "im1"), ("L", "R"))


def pair_in_folder(folder: Path) -> tuple[Path, Path] | None:
    """The left and right image of a folder holding one pair, or ``None``."""
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for a, b in PAIR_ENDINGS:
        for left in images:
            if left.stem.endswith(a):
                stem = left.stem[: len(left.stem) - len(a)] + b
                right = [p for p in images if p.stem == stem]
                if right:
                    return left, right[0]
    return None


def find_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """``(name, left, right)`` for every pair in ``root``: ``image_0/`` + ``image_1/`` with matching names,
    one pair per sub-folder, or ``root`` itself holding one pair."""
    root = Path(root)
    if not root.is_dir():
        raise S3DError(root, "no such folder of stereo pairs")
    pairs = []
    if (root / "image_0").is_dir() and (root / "image_1").is_dir():
        for left in sorted((root / "image_0").iterdir()):
            right = root / "image_1" / left.name
            if left.suffix.lower() in IMAGE_SUFFIXES and right.exists():
                pairs.append((left.stem, left, right))
    for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
        found = pair_in_folder(folder)
        if found:
            pairs.append((folder.name, *found))
    return pairs
