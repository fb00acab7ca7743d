"""Long conversions in segments: resume after an interruption, and share one film between workers.

A video is converted in segments of ``segment_frames`` frames (display order). Each segment is encoded
to its own file in a hidden work folder beside the output and renamed into place only when complete,
so a killed run leaves whole segments and nothing half-written. The output is then joined from the
segments by packet copy (no re-encoding) together with the input's audio and subtitles, and the work
folder is removed. A run that finds the work folder of an identical earlier run (same input file, same
settings: :func:`fingerprint`) converts only the missing segments; workers (processes, GPUs, or machines
sharing the folder) each take every N-th segment.

Every segment starts ``warmup`` frames early, through the depth and the temporal smoothing only, so
that the smoothing is continuous across segments and a resumed or shared run gives the same frames as
a run in one go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import av

from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.matroska import add_projection
from s3d.io.mp4box import PROJECTIONS, ST3D_MODES, add_stereo_box
from s3d.io.video import EncoderSettings, VideoInfo, VideoWriter

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Segment:
    index: int
    start: int  # pts of its first frame (stream time base)
    end: int | None  # pts of the next segment's first frame; None = to the end
    frames: int
    warmup_start: int  # pts of the first frame decoded (``warmup`` frames before ``start``)

    @property
    def name(self) -> str:
        return f"seg_{self.index:05d}.mkv"


def frame_pts(path: Path) -> list[int] | None:
    """Every video frame's pts in display order, read from the packets (no decoding); ``None`` when
    some packet has no timestamp (then the video is one segment)."""
    pts = []
    try:
        with av.open(str(path)) as c:
            for packet in c.demux(c.streams.video[0]):
                if not packet.size:
                    continue
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
    except av.error.FFmpegError as err:
        raise S3DError(path, f"cannot read the video packets ({err.strerror or err})") from None
    return sorted(pts)


def plan_segments(pts: list[int] | None, frames_per_segment: int, warmup: int) -> list[Segment]:
    """Cut the frame list into segments of ``frames_per_segment`` frames; ``0`` (or no ``pts``) = one segment."""
    if frames_per_segment < 0:
        raise S3DError(None, f"segment_frames must be 0 (one segment) or more, got {frames_per_segment}")
    if not pts or frames_per_segment == 0:
        return [Segment(0, 0, None, 0, 0)]
    segments = []
    for i, first in enumerate(range(0, len(pts), frames_per_segment)):
        last = min(first + frames_per_segment, len(pts))
        segments.append(Segment(i, pts[first], pts[last] if last < len(pts) else None, last - first, pts[max(0, first - warmup)]))
    return segments


def fingerprint(src: Path, settings: dict) -> str:
    """What makes two runs produce the same segments: the input file (path, size, modification time)
    and the settings that change the pictures."""
    st = src.stat()
    key = {"input": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "settings": settings}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class WorkFolder:
    """The hidden folder beside ``output`` that holds finished segments and the manifest."""

    def __init__(self, output: Path, key: str, segments: list[Segment], resume: bool):
        self.path = output.with_name(f".{output.name}.s3d-work")
        self.segments = segments
        manifest = {"key": key, "segments": [asdict(s) for s in segments]}
        old = None
        if self.path.is_dir() and (self.path / MANIFEST).is_file():
            try:
                old = json.loads((self.path / MANIFEST).read_text())
            except (OSError, ValueError):
                old = None
        if self.path.exists() and (not resume or old != manifest):
            shutil.rmtree(self.path)  # another input, other settings or resume=false: start afresh
        self.resumed = self.path.is_dir()
        self.path.mkdir(exist_ok=True)
        if not self.resumed:
            with atomic_output(self.path / MANIFEST, overwrite=True) as tmp:
                tmp.write_text(json.dumps(manifest, indent=1))

    @classmethod
    def join(cls, output: Path, key: str, segments: list[Segment]) -> WorkFolder:
        """The folder another worker (rank 0) prepared, opened without writing to it."""
        work = cls.__new__(cls)
        work.path, work.segments, work.resumed = output.with_name(f".{output.name}.s3d-work"), segments, True
        try:
            manifest = json.loads((work.path / MANIFEST).read_text())
        except (OSError, ValueError):
            raise S3DError(work.path, "the work folder's manifest is missing or damaged; did worker 0 start?") from None
        if manifest != {"key": key, "segments": [asdict(s) for s in segments]}:
            raise S3DError(work.path, "the work folder belongs to another input or other settings than this worker's")
        return work

    def done(self, segment: Segment) -> bool:
        return (self.path / segment.name).is_file()

    def part(self, segment: Segment) -> Path:
        return self.path / segment.name

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def join_segments(parts: list[Path], info: VideoInfo, out: Path, fmt: str, stereo_mode: str | None, overwrite: bool, projection: str | None = None) -> None:
    """The output from the segments by packet copy, with the input's audio and subtitles; ``projection``
    (``equirect_180`` for VR180) goes into an MP4's ``sv3d`` box."""
    with atomic_output(out, overwrite) as tmp, av.open(str(parts[0])) as first:
        template = first.streams.video[0]
        with VideoWriter(tmp, fmt, info, template.width, template.height, EncoderSettings(), stereo_mode, template=template) as writer:
            for part in parts:
                with av.open(str(part)) as c:
                    for packet in c.demux(c.streams.video[0]):
                        if packet.size:
                            writer.write_packet(packet)
        if stereo_mode in ST3D_MODES and fmt in ("mp4", "mov"):  # st3d has no right-eye-first mode: cross-eyed MP4 goes by its name
            add_stereo_box(tmp, stereo_mode, projection)  # PyAV cannot attach stereo side data: the boxes go in after muxing
        if projection and fmt in ("matroska", "webm"):  # nor spherical side data: Matroska's Projection, likewise
            try:
                add_projection(tmp, PROJECTIONS[projection])
            except S3DError as err:  # the file is whole without it: players still read the name's tokens
                log.warning("%s: no Projection element written (%s)", out, err.problem)
