"""Stereo and VR metadata in MP4: the Spherical Video V2 ``st3d`` and ``sv3d`` boxes, added to a finished file.

PyAV cannot attach stereo-3D or spherical side data to a stream, so the MP4 muxer writes none. This small
ISO-BMFF writer adds ``st3d`` (Google's Spherical Video V2 RFC: a FullBox with one byte, 0 mono, 1
top-bottom, 2 left-right) and, for VR180, ``sv3d`` (``svhd`` with the writer's name, ``proj`` holding
``prhd``, the pose, and ``equi``, an equirectangular projection whose bounds crop 360 to 180 degrees)
at the end of each video sample entry (``moov/trak/mdia/minf/stbl/stsd/avc1`` ...), grows
every box on the way, and shifts the chunk offsets (``stco``/``co64``) when ``moov`` comes before the media
data. The file is rewritten beside itself and renamed, so it is never half changed.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from s3d.errors import S3DError
from s3d.io.atomic import atomic_output

ST3D_MODES = {"mono": 0, "top_bottom": 1, "left_right": 2}
# Equirectangular bounds (0.32 fixed point: the fraction cut from the top, bottom, left, right of a full
# 360 x 180 degree frame): 180 degrees across is a quarter off each side.
PROJECTIONS = {"equirect_180": (0, 0, 0x40000000, 0x40000000)}
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
VISUAL_ENTRIES = {b"avc1", b"avc3", b"hvc1", b"hev1", b"mp4v", b"av01", b"vp09"}
VISUAL_ENTRY_FIELDS = 78  # bytes of a VisualSampleEntry before its child boxes (ISO/IEC 14496-12)


def boxes(data: bytes, start: int = 0, end: int | None = None, strict: bool = True) -> list[tuple[bytes, int, int, int]]:
    """``(type, box start, payload start, box end)`` of the boxes in ``data[start:end]``; a box that runs past
    its parent raises (``strict``) or ends the list."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            if strict:
                raise ValueError(f"box '{kind.decode(errors='replace')}' at {pos} runs past its parent")
            break
        out.append((kind, pos, pos + header, pos + size))
        pos += size
    return out


def top_level(path: Path) -> list[tuple[bytes, int, int]]:
    """``(type, start, end)`` of a file's top-level boxes, read header by header (the media data can be
    gigabytes); stops at a box smaller than its header."""
    size = Path(path).stat().st_size
    out, pos = [], 0
    with open(path, "rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(16)
            n, kind = struct.unpack(">I4s", header[:8])
            if n == 1:
                n = struct.unpack(">Q", header[8:16])[0]
            elif n == 0:
                n = size - pos
            if n < 8:
                break
            out.append((kind, pos, pos + n))
            pos += n
    return out


def read_moov(path: Path) -> tuple[bytes, int, int] | None:
    """The ``moov`` box of an MP4/MOV file with its start and end offset, or ``None``."""
    found = [(s, e) for k, s, e in top_level(path) if k == b"moov"]
    if len(found) != 1:
        return None
    start, end = found[0]
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start), start, end


def _box(kind: bytes, payload: bytes) -> bytes:
    if len(payload) + 8 < 2**32:
        return struct.pack(">I4s", len(payload) + 8, kind) + payload
    return struct.pack(">I4sQ", 1, kind, len(payload) + 16) + payload


def st3d_box(mode: str) -> bytes:
    return _box(b"st3d", bytes(4) + bytes([ST3D_MODES[mode]]))


def sv3d_box(projection: str) -> bytes:
    """``sv3d``: the metadata source, a pose looking straight ahead, and the equirectangular bounds."""
    svhd = _box(b"svhd", bytes(4) + b"s3d\0")
    prhd = _box(b"prhd", bytes(4) + struct.pack(">iii", 0, 0, 0))
    equi = _box(b"equi", bytes(4) + struct.pack(">IIII", *PROJECTIONS[projection]))
    return _box(b"sv3d", svhd + _box(b"proj", prhd + equi))


def _sample_entry(data: bytes, kind: bytes, payload: int, end: int, added: bytes) -> bytes:
    fields = data[payload : payload + VISUAL_ENTRY_FIELDS]
    children = b"".join(data[s:e] for k, s, _, e in boxes(data, payload + VISUAL_ENTRY_FIELDS, end) if k not in (b"st3d", b"sv3d"))
    return _box(kind, fields + children + added)


def _rebuild(data: bytes, start: int, end: int, added: bytes) -> bytes:
    out = []
    for kind, s, p, e in boxes(data, start, end):
        if kind in CONTAINERS:
            out.append(_box(kind, _rebuild(data, p, e, added)))
        elif kind == b"stsd":
            entries = [_sample_entry(data, k, ep, ee, added) if k in VISUAL_ENTRIES else data[es:ee] for k, es, ep, ee in boxes(data, p + 8, e)]
            out.append(_box(kind, data[p : p + 8] + b"".join(entries)))
        else:
            out.append(data[s:e])
    return b"".join(out)


def _shift_chunk_offsets(moov: bytearray, start: int, end: int, delta: int) -> None:
    for kind, _, p, e in boxes(moov, start, end):
        if kind in CONTAINERS:
            _shift_chunk_offsets(moov, p, e, delta)
        elif kind in (b"stco", b"co64"):
            count = struct.unpack(">I", moov[p + 4 : p + 8])[0]
            fmt, width = (">I", 4) if kind == b"stco" else (">Q", 8)
            for i in range(count):
                at = p + 8 + i * width
                moov[at : at + width] = struct.pack(fmt, struct.unpack(fmt, moov[at : at + width])[0] + delta)


def _entry_boxes(path: Path, wanted: bytes) -> list[tuple[bytes, int, int]]:
    """``(file bytes, payload start, end)`` of each ``wanted`` box in the video sample entries of an MP4 file."""
    data = Path(path).read_bytes()
    found = []

    def walk(start: int, end: int) -> None:
        for kind, _, p, e in boxes(data, start, end):
            if kind in CONTAINERS:
                walk(p, e)
            elif kind == b"stsd":
                for k, _, ep, ee in boxes(data, p + 8, e):
                    if k in VISUAL_ENTRIES:
                        found.extend((data, cp, ce) for ck, _, cp, ce in boxes(data, ep + VISUAL_ENTRY_FIELDS, ee) if ck == wanted)

    walk(0, len(data))
    return found


def read_st3d(path: Path) -> list[int]:
    """The ``st3d`` stereo modes of the video sample entries of an MP4 file (for tests and checks)."""
    return [data[p + 4] for data, p, _ in _entry_boxes(path, b"st3d")]


def read_sv3d(path: Path) -> list[tuple[int, int, int, int]]:
    """The equirectangular bounds ``(top, bottom, left, right)`` of each ``sv3d`` box (for tests and checks)."""
    found = []
    for data, p, e in _entry_boxes(path, b"sv3d"):
        for kind, _, pp, pe in boxes(data, p, e):
            if kind == b"proj":
                found.extend(struct.unpack(">IIII", data[ep + 4 : ep + 20]) for k, _, ep, _ in boxes(data, pp, pe) if k == b"equi")
    return found


def add_stereo_box(path: Path, mode: str, projection: str | None = None) -> None:
    """Give every video track of the MP4/MOV file ``path`` an ``st3d`` box with ``mode`` (``left_right``,
    ``top_bottom`` or ``mono``) and, with ``projection`` (``equirect_180``), an ``sv3d`` box, rewriting the
    file beside itself and renaming it into place."""
    path = Path(path)
    if mode not in ST3D_MODES:
        raise ValueError(f"st3d mode must be one of {', '.join(ST3D_MODES)}, got '{mode}'")
    if projection is not None and projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, got '{projection}'")
    added = st3d_box(mode) + (sv3d_box(projection) if projection else b"")
    size = path.stat().st_size
    moov_found = read_moov(path)
    if moov_found is None:
        raise S3DError(path, "not an MP4 file with one 'moov' box")
    moov, m_start, m_end = moov_found
    top = top_level(path)
    new = bytearray(_rebuild(moov, 0, len(moov), added))
    delta = len(new) - len(moov)
    if any(k == b"mdat" and s > m_start for k, s, _ in top):  # media after moov: its offsets move by delta
        _shift_chunk_offsets(new, 0, len(new), delta)
    with atomic_output(path, overwrite=True) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(_Range(src, 0, m_start), dst, 1 << 20)
        dst.write(new)
        shutil.copyfileobj(_Range(src, m_end, size), dst, 1 << 20)


class _Range:
    """A file read from ``start`` up to ``end`` only (for ``shutil.copyfileobj``)."""

    def __init__(self, f, start: int, end: int):
        self.f, self.left = f, end - start
        f.seek(start)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data
