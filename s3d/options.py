"""Every conversion option checked before any work, as a user mistypes them: one line that names the
option, the value given and what it takes (``s3d: error: divergence must be a number >= 0 ...``)."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from s3d.depth.base import PRECISIONS
from s3d.depth.onnx import ENGINES
from s3d.errors import S3DError
from s3d.io.video import CONTAINER_FORMAT
from s3d.layout import ANAGLYPH_METHODS, LAYOUTS
from s3d.models.fill import LEARNED
from s3d.pipeline import CONVERT_FILLS, EYES, INTERPOLATIONS

# option -> the values it takes (a tuple of choices)
CHOICES = {
    "layout": LAYOUTS,
    "eye": EYES,
    "interpolation": INTERPOLATIONS,
    "fill": CONVERT_FILLS,
    "anaglyph.method": tuple(ANAGLYPH_METHODS),
    "engine": ENGINES,
    "precision": ("auto", *PRECISIONS),
    "on_error": ("skip", "stop"),
    "photo.stereo": ("auto", "mono"),
    "photo.from_stereo": ("repack", "convert"),
    "video.format": tuple(k.lstrip(".") for k in CONTAINER_FORMAT),
}
# option -> (lowest, highest, whole numbers only); None = unbounded on that side
RANGES = {
    "divergence": (0.0, 20.0, False),
    "convergence": (0.0, 1.0, False),
    "batch_size": (1, None, True),
    "threads": (0, None, True),
    "workers": (1, None, True),
    "segment_frames": (0, None, True),
    "max_pixels": (1, None, True),
    "comfort.foreground_scale": (0.0, 10.0, False),
    "comfort.edge_dilation": (0, 64, True),
    "comfort.convergence_smoothing": (0.0, 0.99, False),
    "temporal.smoothing": (0.0, 0.99, False),
    "temporal.scene_cut": (0.0, 1.0, False),
    "temporal.motion": (0.0, 1.0, False),
    "temporal.reuse": (0.0, 1.0, False),
    "temporal.reuse_max": (1, None, True),
    "temporal.warmup": (0, None, True),
    "video.crf": (0, 63, True),
    "video.threads": (0, None, True),
    "photo.quality": (1, 100, True),
    "photo.gif_steps": (1, None, True),
    "photo.gif_frame_ms": (1, None, True),
    "vr180.canvas": (0, 16384, True),
    "depth.vertical_prior": (0.0, 1.0, False),
    "vr180.screen_degrees": (1.0, 179.0, False),
}


def _get(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _number(key: str, value, lo, hi, whole: bool) -> None:
    kind = "a whole number" if whole else "a number"
    bounds = " and ".join(s for s in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "") if s)
    wanted = f"{key} must be {kind}{' ' + bounds if bounds else ''}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise S3DError(None, wanted)
    if whole and float(value) != int(value) or not math.isfinite(value):
        raise S3DError(None, wanted)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise S3DError(None, wanted)


def check_convert_options(cfg: DictConfig) -> None:
    """Raise the one-line :class:`S3DError` of the first option of ``cfg`` (``conf/convert.yaml``) that is out of bounds."""
    for key, choices in CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise S3DError(None, f"{key} must be one of {', '.join(choices)}; got {value!r}")
    for key, (lo, hi, whole) in RANGES.items():
        if key.startswith("depth.") and key.split(".", 1)[1] not in cfg.depth:
            continue  # depth=auto: the chosen network's own config is checked when it is built
        _number(key, _get(cfg, key), lo, hi, whole)
    if cfg.temporal.keyframes != "auto":
        _number("temporal.keyframes", cfg.temporal.keyframes, 1, None, True)
    if cfg.fill == LEARNED and not Path(cfg.fill_weights).is_file():
        raise S3DError(cfg.fill_weights, "no such fill network (fill_weights=)")
