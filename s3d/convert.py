"""The conversion job: a 2D video or photo in, a stereo video or photo out."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from s3d.depth import accelerate, build_depth
from s3d.errors import S3DError
from s3d.export import load_model
from s3d.io.atomic import atomic_output
from s3d.io.image import (
    PHOTO_SUFFIXES,
    is_stereo_photo,
    read_photo,
    read_stereo_photo,
    write_gif,
    write_photo,
)
from s3d.io.overlap import BackgroundSink, background_iter
from s3d.io.video import (
    CONTAINER_FORMAT,
    MATROSKA_STEREO_MODE,
    EncoderSettings,
    VideoWriter,
    decode_frames,
    probe_video,
)
from s3d.layout import packed_size, wiggle_frames
from s3d.pipeline import (
    ModelPipeline,
    StereoPipeline,
    StereoSettings,
    select_device,
    to_tensor,
    to_uint8,
)
from s3d.stereo.temporal import TemporalSmoother

log = logging.getLogger(__name__)

# Filename suffixes that VR players (DeoVR, Skybox, Pigasus, ...) read to pick the layout.
LAYOUT_SUFFIX = {
    "full_sbs": "_LRF_Full_SBS",
    "half_sbs": "_LR_Half_SBS",
    "full_ou": "_TBF_Full_TB",
    "half_ou": "_TB_Half_TB",
    "anaglyph": "_anaglyph",
}


def default_output(input_path: Path, layout: str, suffix: str) -> Path:
    """``movie.mp4 -> movie_LRF_Full_SBS.mkv`` beside the input."""
    return input_path.with_name(f"{input_path.stem}{LAYOUT_SUFFIX[layout]}{suffix}")


def stereo_settings(cfg: DictConfig) -> StereoSettings:
    return StereoSettings(cfg.layout, cfg.eye, float(cfg.divergence), float(cfg.convergence), cfg.anaglyph.method)


def _pipeline(cfg: DictConfig, video: bool = False) -> StereoPipeline:
    device = select_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    temporal = TemporalSmoother(**cfg.temporal) if video and cfg.temporal.smoothing else None
    if cfg.checkpoint:
        model, depth = load_model(Path(cfg.checkpoint), cfg.weights_dir, device)
        return ModelPipeline(model, depth, stereo_settings(cfg), device, temporal)
    depth = accelerate(build_depth(cfg.depth, device), device, cfg.precision, cfg.compile, cfg.channels_last)
    return StereoPipeline(depth, stereo_settings(cfg), device, temporal)


def _batches(frames, size: int):
    """Group decoded frames into ``(rgb list, pts list)`` batches of ``size``."""
    rgb, pts = [], []
    for frame in frames:
        rgb.append(frame.rgb)
        pts.append(frame.pts)
        if len(rgb) == size:
            yield rgb, pts
            rgb, pts = [], []
    if rgb:
        yield rgb, pts


def convert_video(cfg: DictConfig, src: Path) -> Path:
    info = probe_video(src)
    fmt_suffix = "." + cfg.video.format.lstrip(".")
    out = Path(cfg.output) if cfg.output else default_output(src, cfg.layout, fmt_suffix)
    fmt = CONTAINER_FORMAT.get(out.suffix.lower())
    if fmt is None:
        raise S3DError(out, f"unknown video container '{out.suffix}', use one of {', '.join(CONTAINER_FORMAT)}")
    stereo_mode = MATROSKA_STEREO_MODE.get(cfg.layout) if fmt in ("matroska", "webm") else None
    if fmt in ("mp4", "mov") and cfg.layout != "anaglyph":
        log.warning("%s: MP4 carries no stereo flag written by this build; players must go by the file name", out)
    ph, pw = packed_size(cfg.layout, info.height, info.width)
    ph, pw = ph + ph % 2, pw + pw % 2
    enc = EncoderSettings(cfg.video.codec, cfg.video.crf, cfg.video.preset, cfg.video.pix_fmt)
    with atomic_output(out, cfg.overwrite) as tmp:
        pipeline = _pipeline(cfg, video=True)
        with VideoWriter(tmp, fmt, info, pw, ph, enc, stereo_mode) as writer, tqdm(
            total=info.frames or None, unit="frame", desc=src.name, disable=cfg.quiet, file=sys.stderr
        ) as bar:

            def write(job: tuple[np.ndarray, list]) -> None:
                packed, stamps = job
                for frame, pts in zip(packed, stamps):
                    writer.write(frame, pts)

            # Decoding (a thread), inference (here) and encoding (a thread) overlap; queues hold 2 batches.
            batches = background_iter(_batches(decode_frames(info), cfg.batch_size), maxsize=2)
            with contextlib.closing(batches), BackgroundSink(write, maxsize=2) as sink:
                for frames, stamps in batches:
                    sink.put((pipeline(torch.from_numpy(np.stack(frames))).numpy(), stamps))
                    bar.update(len(frames))
    return out


def convert_photo(cfg: DictConfig, src: Path) -> list[Path]:
    """A mono photo becomes a stereo photo (and a wiggle GIF); an MPO stereo photo is repacked from its real eyes."""
    out = Path(cfg.output) if cfg.output else default_output(src, cfg.layout, ".jpg" if src.suffix.lower() == ".mpo" else src.suffix)
    settings = stereo_settings(cfg)
    if is_stereo_photo(src):
        device = torch.device("cpu")
        left_np, right_np = read_stereo_photo(src)
        left, right = (to_tensor(torch.from_numpy(a)[None], device) for a in (left_np, right_np))
        pipeline = StereoPipeline(None, settings, device)  # type: ignore[arg-type]  # no depth needed
    else:
        pipeline = _pipeline(cfg)
        left, right = pipeline.eyes(torch.from_numpy(read_photo(src))[None])
    written = []
    with atomic_output(out, cfg.overwrite) as tmp:
        write_photo(tmp, pipeline.pack(left, right, even=False)[0].numpy(), cfg.photo.quality)
    written.append(out)
    if cfg.photo.gif:
        gif = out.with_name(f"{src.stem}_wiggle.gif")
        frames = [to_uint8(f[None])[0].numpy() for f in wiggle_frames(left[0], right[0], cfg.photo.gif_steps)]
        with atomic_output(gif, cfg.overwrite) as tmp:
            write_gif(tmp, frames, cfg.photo.gif_frame_ms)
        written.append(gif)
    return written


def convert(cfg: DictConfig) -> list[Path]:
    """Convert ``cfg.input`` (a video or a photo) and return the files written."""
    if not cfg.input:
        raise S3DError(None, "no input given: python convert.py input=PATH")
    src = Path(cfg.input).expanduser()
    if src.suffix.lower() in PHOTO_SUFFIXES:
        return convert_photo(cfg, src)
    return [convert_video(cfg, src)]
