"""Photos in and out: JPEG/PNG/WebP, stereo photos (MPO of 3D cameras, Apple spatial photos in HEIF), wiggle GIFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from s3d.errors import S3DError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}  # one picture a file
HEIF_SUFFIXES = {".heic", ".heif"}
PHOTO_SUFFIXES = IMAGE_SUFFIXES | HEIF_SUFFIXES | {".mpo"}  # what convert.py takes as a photo


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in ``[0, 1]`` to bytes, rounded half up (``v * 255 + 0.5``, clamped, truncated: the
    convention the synthesis kernel shares): ``(..., 3, H, W) -> (..., H, W, 3) uint8`` on the CPU."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).movedim(-3, -1).cpu()


def read_image(path: Path, width: int | None = None) -> torch.Tensor:
    """A photo as ``(3, H, W)`` float in ``[0, 1]``, EXIF orientation applied (:func:`read_photo`); with
    ``width``, resized to it (aspect kept, Lanczos)."""
    rgb = read_photo(path)
    if width and rgb.shape[1] != width:
        img = Image.fromarray(rgb)
        rgb = np.array(img.resize((width, round(img.height * width / img.width)), Image.LANCZOS))
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


def to_tensor(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(B, H, W, 3) uint8 -> (B, 3, H, W) float`` in ``[0, 1]`` on ``device``."""
    if device.type == "cuda" and not frames.is_pinned():
        frames = frames.pin_memory()  # so the copy to the GPU is asynchronous
    return frames.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)


def _heif_opener() -> bool:
    """Teach Pillow HEIF (pillow-heif, optional: ``pip install -e '.[heif]'``); False when it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIF = _heif_opener()


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise S3DError(path, "no such file")
    if path.stat().st_size == 0:
        raise S3DError(path, "file is empty")
    if path.suffix.lower() in HEIF_SUFFIXES and not HEIF:
        raise S3DError(path, "reading HEIF photos needs pillow-heif: pip install pillow-heif")
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


def _heif_stereo_group(path: Path) -> list[int] | None:
    """The image indices of a HEIF's stereo pair entity group (``ster``: left, then right), or ``None``."""
    import pillow_heif

    groups = pillow_heif.open_heif(str(path)).info.get("entity_groups") or []
    pair = next((g.get("images") for g in groups if g.get("type") == "ster"), None)
    return list(pair) if pair is not None and len(pair) == 2 else None


def is_stereo_photo(path: Path) -> bool:
    """True for a photo that holds two eyes: a two-frame MPO (3D cameras such as Fujifilm's W3) or a HEIF with a
    stereo pair entity group (Apple spatial photos)."""
    img = _open(path)
    if img.format == "HEIF":
        return _heif_stereo_group(path) is not None
    return img.format == "MPO" and getattr(img, "n_frames", 1) == 2


def read_stereo_photo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Split a stereo photo into ``(left, right)``, each ``(H, W, 3) uint8``: an MPO's frame 1 is the left eye;
    a HEIF's stereo group names the left image first."""
    img = _open(path)
    order = (_heif_stereo_group(path) if img.format == "HEIF" else None) or [0, 1]
    if getattr(img, "n_frames", 1) < 2 or max(order) >= getattr(img, "n_frames", 1):
        raise S3DError(path, f"not a stereo photo: {getattr(img, 'n_frames', 1)} frame(s), expected 2")
    eyes = []
    for i in order:
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
