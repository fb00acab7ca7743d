"""Video decoding and encoding with PyAV.

The output keeps the input's timestamps (frame for frame, so variable frame rate survives), carries
audio and subtitle streams over as packets where the container takes their codec, and marks the
stereo layout in the container.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from s3d.errors import S3DError, check_frame_size

log = logging.getLogger(__name__)

# Matroska StereoMode names as libavformat spells them (the element players read).
MATROSKA_STEREO_MODE = {
    "full_sbs": "left_right",
    "half_sbs": "left_right",
    "full_ou": "top_bottom",
    "half_ou": "top_bottom",
    "full_cross": "right_left",
    "half_cross": "right_left",
    "vr180": "left_right",
}
# What convert.py, folders, the web page and the training films take as a video.
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".mpg", ".mpeg", ".ogv"}
# H.264 frame packing arrangement types (ITU-T H.264, D.2.26) for the layouts it can state with the left
# view first (x264 always writes content_interpretation_type 1: frame 0 is the left view; cross-eyed has none).
H264_FRAME_PACKING = {"left_right": 3, "top_bottom": 4}
CONTAINER_FORMAT = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".webm": "webm"}
# Audio codecs MP4/MOV players accept; others are re-encoded to AAC there.
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed, after rotation
    height: int
    frames: int  # from the container; an estimate where it does not say
    fps: Fraction
    time_base: Fraction
    rotation: int  # degrees counter-clockwise the frames must turn to display upright
    duration: float | None  # seconds, where the container says


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise S3DError(path, "no such file")
    if path.is_dir():
        raise S3DError(path, "is a folder, not a video")
    if path.stat().st_size == 0:
        raise S3DError(path, "file is empty")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as err:
        raise S3DError(path, f"not a media file ({err.strerror or err})") from None


def probe_video(path: Path, max_pixels: int | None = None) -> VideoInfo:
    """Read the stream layout, decoding only the first frame (for its display rotation); refuses files with
    no video stream, and frames above ``max_pixels`` from the declared size, before that decode."""
    with _open_input(path) as container:
        if not container.streams.video:
            raise S3DError(path, "no video stream")
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate or Fraction(24)
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        frames = stream.frames or (round(duration * fps) if duration else 0)
        check_frame_size(path, stream.codec_context.width, stream.codec_context.height, max_pixels)
        rotation = 0
        try:
            first = next(container.decode(stream))
            rotation = int(round(first.rotation)) % 360
        except (StopIteration, av.error.FFmpegError):
            raise S3DError(path, "video stream has no decodable frame") from None
        w, h = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            w, h = h, w
        return VideoInfo(path, w, h, frames, Fraction(fps), Fraction(stream.time_base), rotation, duration)


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display rotation (degrees counter-clockwise) to an ``(H, W, 3)`` frame."""
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation else rgb


@dataclass
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8, upright
    pts: int | None  # in the stream's time base
    time: float | None


def decode_frames(info: VideoInfo, start: int | None = None, end: int | None = None) -> Iterator[Frame]:
    """Decode frames, upright, with their timestamps; a decode error or a truncated file is an error.

    ``start``/``end``: only frames with ``start <= pts < end`` (stream time base), seeking to the
    keyframe before ``start``.
    """
    last_time = None
    count = 0
    with _open_input(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            if start is not None:
                container.seek(start, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and start is not None and frame.pts < start:
                    continue
                if frame.pts is not None and end is not None and frame.pts >= end:
                    break
                count += 1
                last_time = frame.time
                yield Frame(_upright(frame.to_ndarray(format="rgb24"), info.rotation), frame.pts, frame.time)
        except av.error.FFmpegError as err:
            raise S3DError(info.path, f"corrupt video after frame {count} ({err.strerror or err})") from None
    if count == 0 and start is None:
        raise S3DError(info.path, "video stream has no decodable frame")
    if info.duration and last_time is not None and end is None:
        first = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        frame_time = 1.0 / float(info.fps)
        video_end = last_time - first + frame_time
        if video_end < info.duration - 2 * frame_time - 0.05:
            # A video shorter than the file is common (audio that outlasts the picture at the end of films
            # and trailers); a cut-off file is one whose packets, of every stream, stop before its end.
            data_end = _data_end(info.path) - first
            if data_end < info.duration - 2 * frame_time - 0.05:
                raise S3DError(info.path, f"truncated: video ends at {last_time - first:.2f} s of {info.duration:.2f} s")
            log.info("%s: the video ends at %.2f s, the file at %.2f s: converting the frames that exist", info.path, video_end, data_end)


def _data_end(path: Path, window: float = 10.0) -> float:
    """Seconds at which the last packet of any stream ends, demuxing (not decoding) from ``window`` seconds
    before the declared end; 0 where nothing can be read there."""
    end = 0.0
    with _open_input(path) as container:
        if container.duration:
            with contextlib.suppress(av.error.FFmpegError):
                container.seek(max(0, container.duration - int(window * av.time_base)), backward=True)
        try:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        except av.error.FFmpegError:
            pass  # a damaged tail ends where it can be read
    return end


def _decode_from(container, stream, seek_to: int | None, target: int, tolerance: float, earlier: bool):
    """Seek to ``seek_to`` (None: decode on from where the container is) and decode forward to the frame
    at ``target`` (pts in the stream time base, +- ``tolerance``).

    ``-> (frame, last, overshot)``: ``(frame, frame, False)`` found; ``(None, None, True)`` the first frame
    decoded lies past ``target`` though ``earlier`` frames exist (imprecise seeking, e.g. MPEG-TS);
    ``(None, last, False)`` the stream ended before ``target`` (``last`` None if nothing decoded at all).
    """
    if seek_to is not None:
        container.seek(seek_to, stream=stream, backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        if frame.pts is not None and last is None and earlier and frame.pts > target + tolerance:
            return None, None, True
        last = frame
        if frame.pts is not None and frame.pts >= target - tolerance:
            return frame, frame, False
    return None, last, False


class _FrameReader:
    """Frames by timestamp from one video: decodes on to a target shortly ahead (up to ``ahead`` seconds),
    seeks to others, backing off (1 s, 10 s) where a container seeks imprecisely, and decodes from the
    start where seeking fails (some MPEG-TS files decode nothing after a seek)."""

    def __init__(self, info: VideoInfo, ahead: float = 2.0):
        self.info = info
        self.container = _open_input(info.path)
        self.stream = self.container.streams.video[0]
        self.tb = self.stream.time_base
        self.start = self.stream.start_time or 0
        self.rate = self.stream.average_rate or self.stream.guessed_rate or info.fps
        self.tolerance = 1 / (2 * self.rate * self.tb)
        self.ahead = int(ahead / self.tb)
        self.pos: int | None = None  # pts of the last frame returned; None: nothing decoded yet

    def pts_of(self, index: int) -> int:
        """The pts of frame ``index`` at the stream's frame rate."""
        return self.start + int(round(index / (self.rate * self.tb)))

    def close(self) -> None:
        self.container.close()

    def _found(self, frame):
        self.pos = frame.pts
        return frame

    def at(self, target: int, past_end: bool = False):
        """The decoded frame at pts ``target``; past the last frame the last one with ``past_end``, else None."""
        here = self.start if self.pos is None else self.pos
        if (self.pos is None or target > self.pos) and target <= here + self.ahead:
            frame, last, overshot = _decode_from(self.container, self.stream, None, target, self.tolerance, earlier=self.pos is not None)
            if frame is not None:
                return self._found(frame)
            if not overshot and last is not None:
                return last if past_end else None
        for back_off in (0, int(1 / self.tb), int(10 / self.tb)):
            seek_to = max(self.start, target - back_off)
            frame, last, overshot = _decode_from(self.container, self.stream, seek_to, target, self.tolerance, earlier=seek_to > self.start)
            if frame is not None:
                return self._found(frame)
            if not overshot:
                if last is not None:  # decoded to the end without reaching the target
                    return last if past_end else None
                break  # nothing decoded after the seek: seeking does not work in this file
        self.container.close()
        self.container = _open_input(self.info.path)
        self.stream = self.container.streams.video[0]
        frame, last, _ = _decode_from(self.container, self.stream, None, target, self.tolerance, earlier=False)
        if frame is not None:
            return self._found(frame)
        self.pos = None if last is None else last.pts
        return last if past_end else None


def read_frames_at(video: VideoInfo | Path, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames with these indices (constant frame rate assumed: frame ``i`` at ``i / fps``) by
    seeking (or decoding on, for one shortly ahead), never decoding the whole video.

    ``-> [(H, W, 3) uint8, ...]`` upright (display rotation applied), in the order of ``indices``.
    """
    info = video if isinstance(video, VideoInfo) else probe_video(Path(video))
    out = []
    reader = _FrameReader(info)
    try:
        for idx in indices:
            try:
                frame = reader.at(reader.pts_of(idx))
            except av.error.FFmpegError as err:
                raise S3DError(info.path, f"cannot decode frame {idx} ({err.strerror or err})") from None
            if frame is None:
                raise S3DError(info.path, f"could not decode frame {idx}")
            out.append(_upright(frame.to_ndarray(format="rgb24"), info.rotation))
    finally:
        reader.close()
    return out


def frame_at(info: VideoInfo, seconds: float) -> np.ndarray:
    """The frame showing at ``seconds`` (the nearest within half a frame, else the first after it; the
    last frame past the end), upright ``(H, W, 3) uint8``, by seeking, not decoding all."""
    reader = _FrameReader(info)
    try:
        frame = reader.at(reader.start + int(seconds / reader.tb), past_end=True)
    except av.error.FFmpegError as err:
        raise S3DError(info.path, f"cannot decode a frame at {seconds:.1f} s ({err.strerror or err})") from None
    finally:
        reader.close()
    if frame is None:
        raise S3DError(info.path, "video stream has no decodable frame")
    return _upright(frame.to_ndarray(format="rgb24"), info.rotation)


@dataclass(frozen=True)
class EncoderSettings:
    codec: str = "libx264"
    crf: int = 20
    preset: str = "fast"
    pix_fmt: str = "yuv420p"
    threads: int = 0  # encoder threads; 0 = the codec's own choice (x264: 1.5 per core)
    frame_packing: str | None = None  # left_right | top_bottom: x264 writes the H.264 frame-packing SEI (TVs switch to 3D on it)


class VideoWriter:
    """Encode packed frames to ``tmp_path`` and carry over the input's audio and subtitle streams.

    Use as a context manager; :meth:`write` takes ``(H, W, 3) uint8`` frames with the input's
    timestamps, in order. With ``template`` (a video stream of an encoded segment) nothing is encoded:
    :meth:`write_packet` copies that stream's packets. ``side_streams=False`` leaves audio and
    subtitles out (segments carry video only).
    """

    def __init__(
        self,
        tmp_path: Path,
        fmt: str,
        info: VideoInfo,
        width: int,
        height: int,
        settings: EncoderSettings,
        stereo_mode: str | None,
        side_streams: bool = True,
        template: av.video.stream.VideoStream | None = None,
    ):
        self.info = info
        self.out = av.open(str(tmp_path), "w", format=fmt)
        self.encoding = template is None
        self._last_dts: int | None = None
        if template is not None:
            self.video = self.out.add_stream_from_template(template)
        else:
            self._add_encoder(settings, width, height)
        if stereo_mode:
            self.video.metadata["stereo_mode"] = stereo_mode
        self._side = av.open(str(info.path))
        self._side_map = {}
        self._reencode = {}
        for s in self._side.streams if side_streams else ():
            if s.type not in ("audio", "subtitle"):
                continue
            name = s.codec_context.name
            if fmt in ("mp4", "mov") and s.type == "audio" and name not in MP4_AUDIO_CODECS:
                out_s = self.out.add_stream("aac", rate=s.codec_context.sample_rate, layout=s.codec_context.layout)
                self._reencode[s.index] = out_s
            elif name in self.out.supported_codecs:
                out_s = self.out.add_stream_from_template(s)
            else:
                log.warning("%s: dropping %s stream %d: %s cannot hold codec %s", info.path, s.type, s.index, fmt, name)
                continue
            self._side_map[s.index] = out_s
        self._packets = self._side.demux(*[self._side.streams[i] for i in self._side_map]) if self._side_map else iter(())
        self._pending = None
        self._count = 0

    def _add_encoder(self, settings: EncoderSettings, width: int, height: int) -> None:
        info = self.info
        try:
            self.video = self.out.add_stream(settings.codec, rate=info.fps)
        except (av.error.FFmpegError, ValueError) as err:
            self.out.close()
            raise S3DError(None, f"video codec '{settings.codec}' is not available ({err})") from None
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = settings.pix_fmt
        self.video.time_base = info.time_base
        self.video.codec_context.time_base = info.time_base
        opts = {}
        if settings.codec in ("libx264", "libx265"):
            opts = {"crf": str(settings.crf), "preset": settings.preset}
        if settings.codec == "libx264" and settings.frame_packing:
            opts["x264-params"] = f"frame-packing={H264_FRAME_PACKING[settings.frame_packing]}"
        elif settings.codec.endswith("_nvenc"):  # NVIDIA's encoder: constant quality instead of crf
            opts = {"rc": "vbr", "cq": str(settings.crf)}
        if settings.threads:
            self.video.codec_context.thread_count = settings.threads
        self.video.options = opts

    def _mux_side_until(self, t: float | None) -> None:
        """Mux side-stream packets up to time ``t`` (all of them for ``None``) so the file stays interleaved."""
        while True:
            if self._pending is None:
                try:
                    self._pending = next(self._packets)
                except StopIteration:
                    return
                except av.error.FFmpegError:
                    return
            p = self._pending
            if p.dts is None:
                self._pending = None
                continue
            if t is not None and p.dts * p.time_base > t:
                return
            self._pending = None
            src = p.stream.index
            if src in self._reencode:
                out_s = self._reencode[src]
                for frame in p.decode():
                    for q in out_s.encode(frame):
                        self.out.mux(q)
            else:
                p.stream = self._side_map[src]
                self.out.mux(p)

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts if pts is not None else self._count
        frame.time_base = self.info.time_base
        self._count += 1
        self._mux_side_until(float(frame.pts * self.info.time_base))
        for packet in self.video.encode(frame):
            self.out.mux(packet)

    def write_packet(self, packet: av.Packet) -> None:
        """Copy one encoded video packet (of a segment), keeping decode timestamps increasing across
        segments: each segment's encoder starts its dts a few frames before its first pts."""
        if packet.pts is not None:
            self._mux_side_until(float(packet.pts * packet.time_base))
        if self._last_dts is not None and (packet.dts is None or packet.dts <= self._last_dts):
            # Matroska does not store dts, so a segment's first B-frame-delayed packets come back without
            # one; after the previous segment they get the next free tick (below their pts).
            packet.dts = self._last_dts + 1
        if packet.dts is not None:
            self._last_dts = packet.dts
        packet.stream = self.video
        self.out.mux(packet)

    def close(self) -> None:
        for packet in self.video.encode() if self.encoding else ():
            self.out.mux(packet)
        self._mux_side_until(None)
        for out_s in self._reencode.values():
            for q in out_s.encode():
                self.out.mux(q)
        self.out.close()
        self._side.close()

    def abort(self) -> None:
        for c in (self.out, self._side):
            try:
                c.close()
            except Exception:  # closing a half-written file may fail; it is deleted anyway
                pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
