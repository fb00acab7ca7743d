"""Depth maps out and in: what the converter believes, as 16-bit greyscale PNGs a user can edit.

``depth_out=DIR`` writes the nearness that drove each frame's warp (after temporal smoothing and reuse) as
``DIR/<stem>_depth_000000.png`` (``<stem>_depth.png`` for a photo): 0 = farthest, 65535 = nearest.
``depth_in=DIR`` converts from such maps instead of the depth network, whoever made them (this tool, another
converter, a hand edit): 16- or 8-bit greyscale (colour is taken as its luminance), one per frame in name
order, any size (resized to the frame). Counts are checked before any work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from s3d.errors import OutputExistsError, S3DError
from s3d.io.atomic import atomic_output

DEPTH_SUFFIXES = {".png", ".tif", ".tiff"}


def write_depth_png(path: Path, nearness: torch.Tensor, overwrite: bool) -> None:
    """``nearness (H, W)`` in ``[0, 1]`` -> a 16-bit greyscale PNG, written atomically."""
    level = (nearness.clamp(0, 1) * 65535).round().to(torch.int32).cpu().numpy().astype(np.uint16)
    with atomic_output(path, overwrite) as tmp:
        Image.fromarray(level).save(tmp, format="PNG")


def read_depth_png(path: Path) -> torch.Tensor:
    """A greyscale depth map -> ``(H, W)`` float in ``[0, 1]`` (16-bit by 65535, 8-bit by 255)."""
    try:
        img = Image.open(path)
        img.load()
    except (OSError, SyntaxError) as err:
        raise S3DError(path, f"not a readable depth map ({err})") from None
    a = np.asarray(img)
    if a.ndim == 3:
        a = np.asarray(img.convert("L"))
    scale = 65535.0 if a.dtype in (np.uint16, np.int32) or a.max(initial=0) > 255 else 255.0
    return torch.from_numpy(a.astype(np.float32) / scale).clamp(0, 1)


class DepthMapsOut:
    """Writes one map per frame index into ``folder`` (made if missing); an existing map is refused up front."""

    def __init__(self, folder: Path, stem: str, photo: bool, overwrite: bool):
        self.folder, self.stem, self.photo, self.overwrite = Path(folder), stem, photo, overwrite
        if self.folder.exists() and not self.folder.is_dir():
            raise S3DError(self.folder, "depth_out is not a folder")
        existing = sorted(self.folder.glob(f"{stem}_depth*.png")) if self.folder.is_dir() else []
        if existing and not overwrite:
            raise OutputExistsError(existing[0], "depth map")
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, index: int) -> Path:
        return self.folder / (f"{self.stem}_depth.png" if self.photo else f"{self.stem}_depth_{index:06d}.png")

    def write(self, ids: list[int], nearness: torch.Tensor) -> None:
        for i, n in zip(ids, nearness):
            write_depth_png(self.path(i), n[0], overwrite=True)


class DepthMapsIn:
    """Reads the map of each frame index from a folder (name order) or a single file (a photo)."""

    def __init__(self, source: Path, frames: int):
        source = Path(source).expanduser()
        if source.is_file():
            self.paths = [source]
        elif source.is_dir():
            self.paths = sorted(p for p in source.iterdir() if p.suffix.lower() in DEPTH_SUFFIXES and not p.name.startswith("."))
        else:
            raise S3DError(source, "depth_in: no such file or folder")
        if len(self.paths) != frames:
            raise S3DError(source, f"depth_in has {len(self.paths)} depth map(s) for {frames} frame(s)")

    def read(self, ids: list[int], size: tuple[int, int]) -> torch.Tensor:
        """``-> (B, 1, H, W)`` nearness in ``[0, 1]`` at ``size`` for frames ``ids``."""
        maps = []
        for i in ids:
            m = read_depth_png(self.paths[i])[None, None]
            maps.append(F.interpolate(m, size=size, mode="bilinear", align_corners=False) if m.shape[-2:] != size else m)
        return torch.cat(maps)
