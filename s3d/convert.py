"""The conversion job: a 2D video or photo in, a stereo video or photo out."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from s3d.depth import DepthBackend, accelerate, build_depth
from s3d.depth.auto import announce, resolve_depth
from s3d.errors import S3DError, check_frame_size
from s3d.export import load_fill_net, load_model
from s3d.folder import convert_folder
from s3d.io.atomic import atomic_output, check_output
from s3d.io.depth_maps import DepthMapsIn, DepthMapsOut
from s3d.io.image import (
    HEIF_SUFFIXES,
    PHOTO_SUFFIXES,
    is_stereo_photo,
    photo_size,
    read_photo,
    read_stereo_photo,
    write_gif,
    write_photo,
)
from s3d.io.overlap import BackgroundSink, background_iter
from s3d.io.segments import Segment, WorkFolder, fingerprint, frame_pts, join_segments, plan_segments
from s3d.io.video import (
    CONTAINER_FORMAT,
    H264_FRAME_PACKING,
    MATROSKA_STEREO_MODE,
    EncoderSettings,
    VideoInfo,
    VideoWriter,
    decode_frames,
    frame_at,
    probe_video,
)
from s3d.layout import RGBD, pack, packed_size, split, wiggle_frames
from s3d.layout.detect import from_name, half_from_aspect
from s3d.models.fill import LEARNED
from s3d.options import check_convert_options
from s3d.pipeline import (
    ModelPipeline,
    StereoPipeline,
    StereoSettings,
    select_device,
    to_tensor,
    to_uint8,
)
from s3d.stereo.comfort import AutoConvergence
from s3d.stereo.kernel import warm_up
from s3d.stereo.temporal import DepthReuse, TemporalSmoother
from s3d.workers import run_on_workers, wait_for_workers, worker_rank

log = logging.getLogger(__name__)

# Filename suffixes that VR players (DeoVR, Skybox, Pigasus, ...) read to pick the layout.
LAYOUT_SUFFIX = {
    "full_sbs": "_LRF_Full_SBS",
    "half_sbs": "_LR_Half_SBS",
    "full_ou": "_TBF_Full_TB",
    "half_ou": "_TB_Half_TB",
    "full_cross": "_RL_Full_SBS",  # "rl": right eye first (RAD TV, Skybox, DeoVR read the token)
    "half_cross": "_RL_Half_SBS",
    "full_rgbd": "_RGBD",  # no stereo token: a player must not take the depth for the other eye
    "half_rgbd": "_RGBD_Half",
    "vr180": "_180x180_3dh_LR",  # 180-degree, half-dome, left-right: DeoVR, Skybox, Pigasus read these tokens
    "anaglyph": "_anaglyph",
}


def default_output(input_path: Path, layout: str, suffix: str, folder: str | None = None) -> Path:
    """``movie.mp4 -> movie_LRF_Full_SBS.mkv`` beside the input (or in ``folder``)."""
    name = f"{input_path.stem}{LAYOUT_SUFFIX[layout]}{suffix}"
    return Path(folder) / name if folder else input_path.with_name(name)


def stereo_settings(cfg: DictConfig) -> StereoSettings:
    try:
        return StereoSettings(
            cfg.layout,
            cfg.eye,
            float(cfg.divergence),
            float(cfg.convergence),
            cfg.anaglyph.method,
            cfg.interpolation,
            float(cfg.comfort.foreground_scale),
            int(cfg.comfort.edge_dilation),
            int(cfg.vr180.canvas),
            float(cfg.vr180.screen_degrees),
            cfg.fill,
        )
    except ValueError as err:  # a mistyped option is one line, before any work
        raise S3DError(None, str(err)) from None


def temporal_smoother(cfg: DictConfig, smoothing: float | None = None) -> TemporalSmoother | None:
    """The configured smoothing of depth over time (``smoothing`` overrides the weight); ``None`` when off."""
    t = cfg.temporal
    weight = t.smoothing if smoothing is None else smoothing
    return TemporalSmoother(weight, t.scene_cut, t.motion) if weight else None


def keyframe_interval(cfg: DictConfig, depth: DepthBackend | None) -> int:
    """``temporal.keyframes``: a number, or ``auto``: what the depth config asks for on this device (1 without a network)."""
    keyframes = cfg.temporal.keyframes
    if keyframes != "auto":
        return int(keyframes)
    return depth.keyframe_interval if depth is not None else 1


def depth_reuse(cfg: DictConfig, depth: DepthBackend | None) -> DepthReuse | None:
    """The configured key frames of the depth network (``temporal.keyframes``) and skipping of it on frames
    that barely changed (``temporal.reuse``); ``None`` when both are off."""
    t, interval = cfg.temporal, keyframe_interval(cfg, depth)
    if not t.reuse and interval == 1:
        return None
    return DepthReuse(t.reuse, t.reuse_max, interval, t.scene_cut)


def depth_backend(cfg: DictConfig, device: torch.device) -> DepthBackend:
    """The configured depth network with its inference engine and speed options, as conversion runs it."""
    if cfg.depth.get("auto"):  # a caller that did not choose (convert() fetches first): what is here now
        resolve_depth(cfg, fetch=False)
    backend = accelerate(build_depth(cfg.depth, device), device, cfg.precision, cfg.compile, cfg.channels_last, cfg.engine)
    announce(cfg.depth)
    return backend


def _pipeline(cfg: DictConfig, video: bool = False, maps_in: DepthMapsIn | None = None, maps_out: DepthMapsOut | None = None) -> StereoPipeline:
    device = select_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    auto = cfg.comfort
    convergence = AutoConvergence(auto.convergence_smoothing, cfg.temporal.scene_cut) if video and auto.auto_convergence else None
    if cfg.checkpoint:
        if cfg.layout in RGBD:
            raise S3DError(cfg.checkpoint, f"layout={cfg.layout} carries a depth backend's map; a checkpoint= model renders the other eye instead")
        if maps_in is not None or maps_out is not None:
            raise S3DError(cfg.checkpoint, "depth_in/depth_out work with the depth backends, not with a checkpoint= model")
        model, depth = load_model(Path(cfg.checkpoint), cfg.weights_dir, device)
        temporal, reuse = (temporal_smoother(cfg), depth_reuse(cfg, depth)) if video else (None, None)
        return ModelPipeline(model, depth, stereo_settings(cfg), device, temporal, reuse)
    depth = None if maps_in is not None else depth_backend(cfg, device)  # the user's depth maps: no network
    temporal, reuse = (temporal_smoother(cfg), depth_reuse(cfg, depth)) if video else (None, None)
    fill_net = load_fill_net(Path(cfg.fill_weights), device) if cfg.fill == LEARNED else None
    if device.type == "cpu":
        warm_up()  # the synthesis kernel's compile (or cache load) before the first frame, not inside it
    return StereoPipeline(depth, stereo_settings(cfg), device, temporal, reuse, maps_in, maps_out, convergence, fill_net)


def depth_maps(cfg: DictConfig, src: Path, frames: int, photo: bool) -> tuple[DepthMapsIn | None, DepthMapsOut | None]:
    """``depth_in=`` / ``depth_out=``, checked before any work (map count, existing maps)."""
    maps_in = DepthMapsIn(Path(cfg.depth_in), frames) if cfg.depth_in else None
    maps_out = DepthMapsOut(Path(cfg.depth_out).expanduser(), src.stem, photo, cfg.overwrite) if cfg.depth_out else None
    return maps_in, maps_out


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


# Settings that do not change the pictures: a run may resume another's segments whatever these are.
NOT_PICTURE_SETTINGS = (
    "input",
    "output",
    "depth_out",
    "overwrite",
    "quiet",
    "resume",
    "workers",
    "threads",
    "batch_size",
    "on_error",
    "recursive",
    "output_dir",
    "max_pixels",
)


def picture_settings(cfg: DictConfig) -> dict:
    settings = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in NOT_PICTURE_SETTINGS}
    if isinstance(settings.get("depth"), dict):
        settings["depth"].pop("note", None)  # why depth=auto fell back (offline, unreachable ...): not the pictures
    return settings


def _video_output(cfg: DictConfig, src: Path) -> tuple[Path, str, str | None]:
    fmt_suffix = "." + cfg.video.format.lstrip(".")
    out = Path(cfg.output) if cfg.output else default_output(src, cfg.layout, fmt_suffix, cfg.get("output_dir"))
    fmt = CONTAINER_FORMAT.get(out.suffix.lower())
    if fmt is None:
        raise S3DError(out, f"unknown video container '{out.suffix}', use one of {', '.join(CONTAINER_FORMAT)}")
    # Matroska: the StereoMode element, written by the muxer; MP4/MOV: the st3d box, added after muxing
    stereo_mode = MATROSKA_STEREO_MODE.get(cfg.layout)
    return out, fmt, stereo_mode


def convert_segment(
    pipeline: StereoPipeline,
    info: VideoInfo,
    seg: Segment,
    path: Path,
    enc: EncoderSettings,
    size: tuple[int, int],
    batch_size: int,
    bar: _Reporting,
    index_of: dict[int, int] | None = None,
) -> None:
    """Convert one segment into its own video-only file (complete or absent). ``index_of``: each frame's
    index in the video by its pts, for depth maps in and out."""
    pipeline.reset()
    ph, pw = size
    with atomic_output(path, overwrite=True) as tmp, VideoWriter(tmp, "matroska", info, pw, ph, enc, None, side_streams=False) as writer:

        def write(job: tuple[np.ndarray, list]) -> None:
            packed, stamps = job
            for frame, pts in zip(packed, stamps):
                writer.write(frame, pts)

        done = 0
        # Decoding (a thread), inference (here) and encoding (a thread) overlap; queues hold 2 batches.
        frames = decode_frames(info, start=seg.warmup_start if seg.index else None, end=seg.end)
        batches = background_iter(_batches(frames, batch_size), maxsize=2)
        with contextlib.closing(batches), BackgroundSink(write, maxsize=2) as sink:
            for rgb, stamps in batches:
                keep = [pts is None or pts >= seg.start for pts in stamps]
                batch = torch.from_numpy(np.stack(rgb))
                if not all(keep):  # the warm-up before the segment: depth and smoothing only
                    pipeline.prime(batch[[not k for k in keep]])
                    batch, stamps = batch[keep], [p for p, k in zip(stamps, keep) if k]
                if len(stamps):
                    ids = [index_of[p] for p in stamps] if index_of is not None else None
                    sink.put((pipeline(batch, ids=ids).numpy(), stamps))
                    done += len(stamps)
                    bar.update(len(stamps))
    if seg.frames and done != seg.frames:
        raise S3DError(info.path, f"segment {seg.index}: decoded {done} frames, expected {seg.frames} (cannot seek in this file? try segment_frames=0)")


class _Reporting:
    """A progress bar that also reports ``(frames done, total)`` to a callback (the web page's bar)."""

    def __init__(self, bar: tqdm, callback: Callable[[int, int], None] | None, done: int, total: int):
        self.bar, self.callback, self.done, self.total = bar, callback, done, total

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


def open_work_folder(out: Path, key: str, segments: list[Segment], resume: bool, rank: int, world: int) -> WorkFolder:
    """The segment work folder: worker 0 prepares it (starts afresh or resumes) while the others wait at the
    barrier, then they open it; no two workers ever write the manifest or remove the folder."""
    work = WorkFolder(out, key, segments, resume) if rank == 0 else None
    if world > 1:
        wait_for_workers()
    return work if work is not None else WorkFolder.join(out, key, segments)


def convert_video(cfg: DictConfig, src: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    info = probe_video(src, cfg.max_pixels)
    out, fmt, stereo_mode = _video_output(cfg, src)
    check_output(out, cfg.overwrite)  # refuse now, not after hours of work
    ph, pw = packed_size(cfg.layout, info.height, info.width, cfg.vr180.canvas, cfg.vr180.screen_degrees)
    size = (ph + ph % 2, pw + pw % 2)
    packing = stereo_mode if stereo_mode in H264_FRAME_PACKING and cfg.layout != "vr180" else None  # VR180 players read sv3d
    enc = EncoderSettings(cfg.video.codec, cfg.video.crf, cfg.video.preset, cfg.video.pix_fmt, cfg.video.threads, packing)
    all_pts = frame_pts(src) if cfg.segment_frames or cfg.depth_in or cfg.depth_out else None
    index_of = None
    if cfg.depth_in or cfg.depth_out:
        if all_pts is None:
            raise S3DError(src, "depth_in/depth_out need every frame's timestamp, and this file has frames without one")
        index_of = {pts: i for i, pts in enumerate(sorted(all_pts))}
    maps_in, maps_out = depth_maps(cfg, src, len(all_pts or []), photo=False)
    segments = plan_segments(all_pts if cfg.segment_frames else None, cfg.segment_frames, cfg.temporal.warmup)
    rank, world = worker_rank()
    work = open_work_folder(out, fingerprint(src, picture_settings(cfg)), segments, cfg.resume, rank, world)
    mine = [s for s in segments if s.index % world == rank and not work.done(s)]
    if work.resumed and len(mine) < len(segments):
        log.info("%s: resuming, %d of %d segments already done", out, len(segments) - len(mine), len(segments))
    try:
        pipeline = _pipeline(cfg, video=True, maps_in=maps_in, maps_out=maps_out)
        done_frames = sum(s.frames for s in segments if work.done(s))
        with tqdm(total=info.frames or None, initial=done_frames, unit="frame", desc=src.name, disable=cfg.quiet or rank > 0, file=sys.stderr) as bar:
            reporting = _Reporting(bar, progress, done_frames, sum(s.frames for s in segments) or info.frames)
            for seg in mine:
                convert_segment(pipeline, info, seg, work.part(seg), enc, size, pipeline.batch_size(cfg.batch_size), reporting, index_of)
        if world > 1:
            wait_for_workers()
            if rank > 0:
                return out
        join_segments([work.part(s) for s in segments], info, out, fmt, stereo_mode, cfg.overwrite, "equirect_180" if cfg.layout == "vr180" else None)
    except BaseException:
        if rank > 0:
            raise  # the folder is worker 0's to keep or remove
        if not any(work.done(s) for s in segments):
            work.remove()  # nothing to resume from
        else:
            log.info("%s: %d of %d segments are done; run the same command again to resume", out, sum(work.done(s) for s in segments), len(segments))
        raise
    work.remove()
    return out


def stereo_photo_eyes(cfg: DictConfig, src: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The two real eyes of a stereo photo, ``(H, W, 3) uint8`` each, or ``None`` for a 2D photo: an MPO or a
    HEIF stereo pair (Apple spatial photos), or a photo whose name says side by side or over-under
    (``calf-left-right.jpg``, ``x_LR.jpg``, ``y_TB.png``; half or full from the name, else from the aspect).
    ``photo.stereo=mono`` takes every photo as 2D."""
    if cfg.photo.stereo == "mono":
        return None
    if is_stereo_photo(src):
        return read_stereo_photo(src)
    named = from_name(src.stem)
    if named is None:
        return None
    arrangement, left_first, half = named
    rgb = read_photo(src)
    if half is None:
        half = half_from_aspect(arrangement, rgb.shape[1], rgb.shape[0])
    frame = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    left, right = split(frame, f"{'half' if half else 'full'}_{arrangement}", left_first is not False)
    return to_uint8(left)[0].numpy(), to_uint8(right)[0].numpy()


def photo_eyes(cfg: DictConfig, src: Path, frame: np.ndarray | None = None) -> tuple[StereoPipeline, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(pipeline, left, right, rgbd)`` for a photo, or for ``frame`` (one video frame) when given. A stereo photo
    is repacked from its real eyes (``photo.from_stereo=repack``) or converted from the eye ``eye=`` names
    (``photo.from_stereo=convert``). ``rgbd``: for the RGB+depth layouts, the packed ``(1, H, W', 3) uint8`` frame
    from the same depth as the eyes; else None."""
    eyes = stereo_photo_eyes(cfg, src) if frame is None else None
    if eyes is not None and cfg.photo.from_stereo == "repack" and cfg.layout not in RGBD:  # RGB+depth needs a depth map
        device = torch.device("cpu")
        left, right = (to_tensor(torch.from_numpy(np.ascontiguousarray(a))[None], device) for a in eyes)
        return StereoPipeline(None, stereo_settings(cfg), device), left, right, None  # type: ignore[arg-type]  # no depth needed
    maps_in, maps_out = depth_maps(cfg, src, 1, photo=True) if frame is None else (None, None)
    pipeline = _pipeline(cfg, maps_in=maps_in, maps_out=maps_out)
    frames = photo_input(cfg, src, eyes, frame)
    if cfg.layout in RGBD:  # the picture beside the depth that made the eyes: one depth estimate for both
        return pipeline, *pipeline.eyes_and_frame(frames, ids=[0], even=False)
    return pipeline, *pipeline.eyes(frames, ids=[0]), None


def photo_input(cfg: DictConfig, src: Path, eyes: tuple[np.ndarray, np.ndarray] | None, frame: np.ndarray | None) -> torch.Tensor:
    """The picture a photo's conversion starts from, ``(1, H, W, 3) uint8``: ``frame`` if given, else the eye
    of a stereo photo that ``eye=`` names, else the photo."""
    if frame is None and eyes is not None:
        frame = eyes[1] if cfg.eye == "right" else eyes[0]
    return torch.from_numpy(np.ascontiguousarray(read_photo(src) if frame is None else frame))[None]


def write_wiggle(cfg: DictConfig, gif: Path, left: torch.Tensor, right: torch.Tensor, overwrite: bool) -> Path:
    frames = [to_uint8(f[None])[0].numpy() for f in wiggle_frames(left[0], right[0], cfg.photo.gif_steps)]
    with atomic_output(gif, overwrite) as tmp:
        write_gif(tmp, frames, cfg.photo.gif_frame_ms)
    return gif


def convert_photo(cfg: DictConfig, src: Path) -> list[Path]:
    """A mono photo becomes a stereo photo (and a wiggle GIF); an MPO stereo photo is repacked from its real eyes."""
    check_frame_size(src, *photo_size(src), cfg.max_pixels)
    suffix = ".jpg" if src.suffix.lower() in {".mpo", *HEIF_SUFFIXES} else src.suffix  # formats few viewers open: written as JPEG
    out = Path(cfg.output) if cfg.output else default_output(src, cfg.layout, suffix, cfg.get("output_dir"))
    pipeline, left, right, rgbd = photo_eyes(cfg, src)
    packed = rgbd if rgbd is not None else pipeline.pack(left, right, even=False)
    written = []
    with atomic_output(out, cfg.overwrite) as tmp:
        write_photo(tmp, packed[0].numpy(), cfg.photo.quality)
    written.append(out)
    if cfg.photo.gif:
        written.append(write_wiggle(cfg, out.with_name(f"{src.stem}_wiggle.gif"), left, right, cfg.overwrite))
    return written


def preview(cfg: DictConfig, src: Path, folder: Path) -> tuple[Path, ...]:
    """One frame (a photo, or the middle of a video) as ``preview_anaglyph.png``, ``preview_wiggle.gif`` and, when
    a depth network ran, ``preview_depth.png`` (near = bright) in ``folder``: the settings and what the converter
    believes, judged without a headset."""
    if src.suffix.lower() in PHOTO_SUFFIXES:
        check_frame_size(src, *photo_size(src), cfg.max_pixels)
        frame = None
        pipeline, left, right, _ = photo_eyes(cfg, src)
    else:
        info = probe_video(src, cfg.max_pixels)
        frame = frame_at(info, (info.duration or 0) / 2)
        pipeline, left, right, _ = photo_eyes(cfg, src, frame)
    anaglyph_path = folder / "preview_anaglyph.png"
    with atomic_output(anaglyph_path, overwrite=True) as tmp:
        write_photo(tmp, to_uint8(pack(left, right, "anaglyph", anaglyph_method=cfg.anaglyph.method))[0].numpy(), cfg.photo.quality)
    written = [anaglyph_path, write_wiggle(cfg, folder / "preview_wiggle.gif", left, right, overwrite=True)]
    if pipeline.depth is not None and pipeline.maps_in is None:
        rgb = read_photo(src) if frame is None else frame
        with torch.inference_mode():
            near = pipeline.nearness(to_tensor(torch.from_numpy(np.ascontiguousarray(rgb))[None], pipeline.device))
        depth_path = folder / "preview_depth.png"
        with atomic_output(depth_path, overwrite=True) as tmp:
            write_photo(tmp, to_uint8(near.expand(-1, 3, -1, -1))[0].numpy(), cfg.photo.quality)
        written.append(depth_path)
    return tuple(written)


def convert_file(cfg: DictConfig, src: Path, progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Convert one video or photo and return the files written; ``progress(done, total)`` for videos."""
    if src.suffix.lower() in PHOTO_SUFFIXES:
        return convert_photo(cfg, src)
    if cfg.workers > 1 and worker_rank()[1] == 1:
        return [run_on_workers(convert_video, (cfg, src), cfg.workers, cfg.device)]
    return [convert_video(cfg, src, progress)]


def convert(cfg: DictConfig) -> list[Path]:
    """Convert ``cfg.input`` (a video, a photo or a folder of them) and return the files written."""
    check_convert_options(cfg)
    if not cfg.input:
        raise S3DError(None, "no input given: python convert.py input=PATH")
    src = Path(cfg.input).expanduser()
    if not src.exists():
        raise S3DError(src, "no such file")
    if not cfg.checkpoint and not cfg.depth_in:  # a checkpoint brings its own depth; depth maps need none
        resolve_depth(cfg, cfg.quiet)
    if not src.is_dir():
        return convert_file(cfg, src)
    report = convert_folder(cfg, src, convert_file, tuple(LAYOUT_SUFFIX.values()))
    if report.failed:
        raise S3DError(
            src,
            f"{len(report.failed)} of {len(report.failed) + len(report.converted) + len(report.skipped)} files failed: {report.failed[0][0].name}: {report.failed[0][1]}",
        )
    return [p for _, written in report.converted for p in written]
