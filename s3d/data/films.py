"""Frames of real 3D films: every N-th frame (200 as in the article), split into the two eyes.

Frames are read by seeking to each sampled timestamp (:func:`s3d.io.video.read_frames_at`, upright),
never by decoding the whole film; the eyes are cached as PNG pairs in the ``image_0/`` + ``image_1/``
layout of :mod:`s3d.data.pairs`, which then serves them with the same augmentation. Train and validation are split by film, never by frame.
VR clips (360 or VR180 equirectangular) are cut to the low-distortion centre of each eye.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from s3d.data.pairs import StereoPairsDataModule, find_pairs
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.image import to_uint8
from s3d.io.video import VIDEO_SUFFIXES, probe_video, read_frames_at  # read_frames_at: frames by index, seeking (re-exported)
from s3d.layout import split
from s3d.layout.detect import StereoLayout, detect_layout

log = logging.getLogger(__name__)

# Centre windows (fractions of the eye, x0, x1, y0, y1) and their true aspect (degrees wide / high).
VR_WINDOWS = {"equirect360": ((3 / 8, 5 / 8, 1 / 3, 2 / 3), 90 / 60), "vr180": ((1 / 4, 3 / 4, 1 / 4, 3 / 4), 1.0)}


def sample_frame_indices(n_frames: int, every: int, offset: int = 0) -> list[int]:
    """``offset, offset + every, ...`` below ``n_frames``."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return list(range(offset, n_frames, every))


def vr_projection(name: str, setting: str) -> str | None:
    """``flat`` -> None; ``auto`` reads ``360`` / ``vr180`` / ``180`` in the file name."""
    if setting != "auto":
        return None if setting == "flat" else setting
    low = name.lower()
    if "vr180" in low or "_180" in low:
        return "vr180"
    if "360" in low:
        return "equirect360"
    return None


def vr_centre(eye: torch.Tensor, projection: str) -> torch.Tensor:
    """Cut the low-distortion centre of an equirectangular eye and give it its true aspect. ``(3,H,W)``."""
    (x0, x1, y0, y1), aspect = VR_WINDOWS[projection]
    h, w = eye.shape[-2:]
    crop = eye[:, int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]
    ch = crop.shape[-2]
    return F.interpolate(crop[None], size=(ch, round(ch * aspect)), mode="bilinear", align_corners=False, antialias=True)[0]


def split_eyes(frame: np.ndarray, layout: StereoLayout, projection: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H, W, 3) uint8`` packed frame -> ``(left, right)`` float ``(3, h, w)``, aspect restored."""
    x = torch.from_numpy(frame).permute(2, 0, 1).float()[None] / 255
    # Equirect eyes get their true aspect from the projection, not from the squeeze flag.
    name = f"full_{layout.arrangement}" if projection else layout.name
    left, right = split(x, name, layout.left_first)
    left, right = left[0], right[0]
    if projection:
        left, right = vr_centre(left, projection), vr_centre(right, projection)
    return left, right


def _save(t: torch.Tensor, path: Path) -> None:
    arr = to_uint8(t).numpy()
    with atomic_output(path, overwrite=True) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def film_layout(path: Path, layout: str, first_frame: np.ndarray | None) -> StereoLayout:
    """The configured layout, or the detected one (logged with what told us)."""
    if layout != "auto":
        arrangement = layout.split("_")[1]
        left_first = not layout.endswith("_rl")
        return StereoLayout(arrangement, layout.startswith("half"), left_first, "config")
    with av.open(str(path)) as c:
        metadata = dict(c.streams.video[0].metadata)
    frame = None if first_frame is None else torch.from_numpy(first_frame).permute(2, 0, 1).float() / 255
    found = detect_layout(path.name, metadata, frame)
    if found is None:
        raise S3DError(path, "cannot tell its stereo layout (no metadata, no name token, halves unalike); set data.layout")
    log.info("%s: %s, %s eye first (from %s)", path.name, found.name, "left" if found.left_first else "right", found.source)
    return found


def extract_film(path: Path, cache_dir: Path, every: int, layout: str = "auto", projection: str = "auto", max_frames: int | None = None) -> Path:
    """Cache the eyes of every ``every``-th frame under ``cache_dir/<key>/image_{0,1}/``; return that folder."""
    info = probe_video(path)
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{every}|{layout}|{projection}".encode()).hexdigest()[:12]
    folder = cache_dir / f"{path.stem}-{key}"
    if (folder / "done").exists():
        return folder
    indices = sample_frame_indices(info.frames, every)[:max_frames]
    frames = read_frames_at(info, indices)
    found = film_layout(path, layout, frames[0] if frames else None)
    proj = vr_projection(path.name, projection)
    for sub in ("image_0", "image_1"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for idx, frame in zip(indices, frames):
        left, right = split_eyes(frame, found, proj)
        _save(left, folder / "image_0" / f"{path.stem}_{idx:06d}.png")
        _save(right, folder / "image_1" / f"{path.stem}_{idx:06d}.png")
    (folder / "done").write_text(f"{found}\nprojection={proj}\nframes={indices}\n")
    return folder


def find_films(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise S3DError(root, "no such folder of 3D films")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)


class StereoFilmsDataModule(StereoPairsDataModule):
    """Every ``every``-th frame of each film in ``root``; the first ``val_films`` films (by name) validate.

    The options of :class:`StereoPairsDataModule` apply to the frames: ``exclude`` and ``val_names``
    take frame names (``<film stem>_<frame:06d>``) or film stems (all frames of that film), ``val_names``
    replacing the ``val_films`` split when given; ``hints`` (and the others) reach the training set.
    """

    def __init__(
        self,
        root: str,
        every: int = 200,
        layout: str = "auto",
        projection: str = "auto",
        cache_dir: str = "~/.cache/s3d/frames",
        val_films: int = 1,
        max_frames_per_film: int | None = None,
        **pairs_kwargs,
    ):
        super().__init__(roots=[], **pairs_kwargs)
        self.root, self.every, self.layout, self.projection = root, every, layout, projection
        self.cache_dir, self.val_films, self.max_frames = Path(cache_dir).expanduser(), val_films, max_frames_per_film
        self._film_of: dict[str, str] = {}  # frame (pair) name -> film stem
        self._film_order: list[str] = []  # film stems in find_films order

    def _films(self) -> list[Path]:
        return [f for f in find_films(self.root) if f.stem not in self.exclude]

    def prepare_data(self) -> None:
        for film in self._films():
            extract_film(film, self.cache_dir, self.every, self.layout, self.projection, self.max_frames)

    def split(self, pairs: list) -> tuple[list, list]:
        """By film: ``val_names`` (frame names or film stems) if given, else the first ``val_films`` films."""
        if self.val_names:
            is_val = lambda p: p[0] in self.val_names or self._film_of.get(p[0]) in self.val_names  # noqa: E731
        else:
            val_films = set(self._film_order[: self.val_films])
            is_val = lambda p: self._film_of[p[0]] in val_films  # noqa: E731
        return [p for p in pairs if is_val(p)], [p for p in pairs if not is_val(p)]

    def setup(self, stage: str | None = None) -> None:
        films = self._films()
        if not self.val_names and len(films) <= self.val_films:
            raise S3DError(self.root, f"found {len(films)} films, need more than val_films={self.val_films}")
        folders = [extract_film(f, self.cache_dir, self.every, self.layout, self.projection, self.max_frames) for f in films]
        self._film_of = {name: film.stem for film, folder in zip(films, folders) for name, _, _ in find_pairs(folder)}
        self._film_order = [f.stem for f in films]
        self.roots = [str(f) for f in folders]
        super().setup(stage)  # excludes frame names, splits with self.split, builds the sets with hints etc.
