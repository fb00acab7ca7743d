"""Photos in and out: JPEG/PNG/WebP, MPO stereo photos (3D cameras), wiggle GIFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from s3d.errors import S3DError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".mpo"}


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise S3DError(path, "no such file")
    if path.stat().st_size == 0:
        raise S3DError(path, "file is empty")
    try:
        img = Image.open(path)
        img.load()
    except Image.DecompressionBombError as err:
        raise S3DError(path, f"refused as a decompression bomb ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise S3DError(path, f"not a readable image ({err})") from None
    return img


def _rgb(img: Image.Image) -> np.ndarray:
    return np.array(ImageOps.exif_transpose(img).convert("RGB"))


def photo_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the header, without decoding the pixels."""
    if not path.exists():
        raise S3DError(path, "no such file")
    try:
        with Image.open(path) as img:
            return img.size
    except Image.DecompressionBombError as err:
        raise S3DError(path, f"refused as a decompression bomb ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise S3DError(path, f"not an image ({err})") from None


def read_photo(path: Path) -> np.ndarray:
    """``-> (H, W, 3) uint8`` RGB, EXIF orientation applied."""
    return _rgb(_open(path))


def is_stereo_photo(path: Path) -> bool:
    """True for a two-frame MPO (the stereo format of 3D cameras such as Fujifilm's W3)."""
    img = _open(path)
    return img.format == "MPO" and getattr(img, "n_frames", 1) == 2


def read_stereo_photo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Split an MPO stereo photo into ``(left, right)``, each ``(H, W, 3) uint8``; frame 1 is the left eye."""
    img = _open(path)
    if getattr(img, "n_frames", 1) != 2:
        raise S3DError(path, f"not a stereo photo: {getattr(img, 'n_frames', 1)} frame(s), expected 2")
    eyes = []
    for i in range(2):
        img.seek(i)
        eyes.append(np.array(img.convert("RGB")))
    if eyes[0].shape != eyes[1].shape:
        raise S3DError(path, f"stereo photo eyes differ in size: {eyes[0].shape} and {eyes[1].shape}")
    return eyes[0], eyes[1]


def write_photo(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write ``(H, W, 3) uint8`` in the format of ``path``'s suffix (``path`` may be a temporary name)."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    Image.fromarray(rgb).save(path, format=fmt, quality=quality)


def write_gif(path: Path, frames: list[np.ndarray], duration_ms: int) -> None:
    """A looping GIF from ``[(H, W, 3) uint8, ...]``."""
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
