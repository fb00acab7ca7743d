"""Stereo metadata in MP4: the Spherical Video V2 ``st3d`` box, added to a finished file.

PyAV cannot attach stereo-3D side data to a stream, so the MP4 muxer writes none. This small ISO-BMFF
writer adds ``st3d`` (Google's Spherical Video V2 RFC: a FullBox with one byte, 0 mono, 1 top-bottom,
2 left-right) at the end of each video sample entry (``moov/trak/mdia/minf/stbl/stsd/avc1`` ...), grows
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


def _sample_entry(data: bytes, kind: bytes, payload: int, end: int, mode: str) -> bytes:
    fields = data[payload : payload + VISUAL_ENTRY_FIELDS]
    children = b"".join(data[s:e] for k, s, _, e in boxes(data, payload + VISUAL_ENTRY_FIELDS, end) if k != b"st3d")
    return _box(kind, fields + children + st3d_box(mode))


def _rebuild(data: bytes, start: int, end: int, mode: str) -> bytes:
    out = []
    for kind, s, p, e in boxes(data, start, end):
        if kind in CONTAINERS:
            out.append(_box(kind, _rebuild(data, p, e, mode)))
        elif kind == b"stsd":
            entries = [_sample_entry(data, k, ep, ee, mode) if k in VISUAL_ENTRIES else data[es:ee] for k, es, ep, ee in boxes(data, p + 8, e)]
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


def read_st3d(path: Path) -> list[int]:
    """The ``st3d`` stereo modes of the video sample entries of an MP4 file (for tests and checks)."""
    data = Path(path).read_bytes()
    found = []

    def walk(start: int, end: int) -> None:
        for kind, _, p, e in boxes(data, start, end):
            if kind in CONTAINERS:
                walk(p, e)
            elif kind == b"stsd":
                for k, _, ep, ee in boxes(data, p + 8, e):
                    if k in VISUAL_ENTRIES:
                        found.extend(data[cp + 4] for ck, _, cp, _ in boxes(data, ep + VISUAL_ENTRY_FIELDS, ee) if ck == b"st3d")

    walk(0, len(data))
    return found


def add_stereo_box(path: Path, mode: str) -> None:
    """Give every video track of the MP4/MOV file ``path`` an ``st3d`` box with ``mode`` (``left_right``,
    ``top_bottom`` or ``mono``), rewriting the file beside itself and renaming it into place."""
    path = Path(path)
    if mode not in ST3D_MODES:
        raise ValueError(f"st3d mode must be one of {', '.join(ST3D_MODES)}, got '{mode}'")
    size = path.stat().st_size
    moov_found = read_moov(path)
    if moov_found is None:
        raise S3DError(path, "not an MP4 file with one 'moov' box")
    moov, m_start, m_end = moov_found
    top = top_level(path)
    new = bytearray(_rebuild(moov, 0, len(moov), mode))
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
