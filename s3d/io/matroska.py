"""VR180 in Matroska: the ``Projection`` element added to a finished file's video track.

PyAV cannot attach spherical side data to a stream, so FFmpeg's Matroska muxer writes no ``Projection``. This
adds one (``Video/Projection``: ``ProjectionType`` 1, equirectangular, and ``ProjectionPrivate``, the same
version, flags and bounds as the ``equi`` box of MP4's ``sv3d``) without moving the clusters: the ``Tracks``
element grows, and the ``Void`` that FFmpeg leaves between the ``SeekHead`` and the ``Info`` shrinks by as much,
so everything after ``Tracks`` (clusters, cues) stays where the ``SeekHead`` and the cues say. The two entries
that move (``Info``, ``Tracks``) are corrected in the ``SeekHead``, and the ``CRC-32`` elements of the masters
that changed are recomputed. The file is rewritten beside itself and renamed.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

from s3d.errors import S3DError
from s3d.io.atomic import atomic_output

SEGMENT, SEEKHEAD, SEEK, SEEK_ID, SEEK_POSITION = 0x18538067, 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
TRACKS, TRACK_ENTRY, TRACK_TYPE, VIDEO, VOID, CRC32 = 0x1654AE6B, 0xAE, 0x83, 0xE0, 0xEC, 0xBF
PROJECTION, PROJECTION_TYPE, PROJECTION_PRIVATE = 0x7670, 0x7671, 0x7672
HEAD_BYTES = 1 << 20  # the header elements (SeekHead, Void, Info, Tracks) sit in the first bytes of the file


def _vint_length(first: int) -> int:
    for n in range(1, 9):
        if first & (0x80 >> (n - 1)):
            return n
    raise ValueError("not an EBML variable-length integer")


def _read_id(b: bytes, i: int) -> tuple[int, int]:
    n = _vint_length(b[i])
    return int.from_bytes(b[i : i + n], "big"), n


def _read_size(b: bytes, i: int) -> tuple[int | None, int]:
    n = _vint_length(b[i])
    value = b[i] & (0xFF >> n)
    for k in range(1, n):
        value = (value << 8) | b[i + k]
    return (None if value == (1 << (7 * n)) - 1 else value), n  # all ones: unknown size


def _size(value: int, length: int = 0) -> bytes:
    """``value`` as an EBML size of ``length`` bytes (0: the fewest)."""
    length = length or next(n for n in range(1, 9) if value < (1 << (7 * n)) - 1)
    if value >= (1 << (7 * length)) - 1:
        raise ValueError(f"{value} does not fit an EBML size of {length} bytes")
    return (value | (1 << (7 * length))).to_bytes(length, "big")  # the length marker bit, then the value


def _id_bytes(eid: int) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big")


def _children(b: bytes, start: int, end: int) -> list[tuple[int, int, int, int, int]]:
    """``(id, element start, size-field length, payload start, element end)`` of the elements in ``b[start:end]``."""
    out, i = [], start
    while i < end:
        eid, n_id = _read_id(b, i)
        size, n_size = _read_size(b, i + n_id)
        payload = i + n_id + n_size
        stop = end if size is None else payload + size
        if stop > end:
            raise ValueError(f"element {eid:#x} at {i} runs past its parent")
        out.append((eid, i, n_size, payload, stop))
        i = stop
    return out


def _element(eid: int, payload: bytes, size_length: int = 0) -> bytes:
    try:
        return _id_bytes(eid) + _size(len(payload), size_length) + payload
    except ValueError:
        return _id_bytes(eid) + _size(len(payload)) + payload


def _with_crc(eid: int, b: bytes, payload_start: int, end: int, size_length: int, parts: list[bytes]) -> bytes:
    """A master element from its children ``parts``; its CRC-32 child (if it had one) recomputed."""
    had_crc = any(k == CRC32 for k, *_ in _children(b, payload_start, end))
    body = b"".join(parts)
    if had_crc:
        body = _element(CRC32, struct.pack("<I", zlib.crc32(body))) + body
    return _element(eid, body, size_length)


def projection_element(bounds: tuple[int, int, int, int]) -> bytes:
    """``Projection``: equirectangular (type 1) with ``bounds`` (top, bottom, left, right; 0.32 fixed point)."""
    private = bytes(4) + struct.pack(">IIII", *bounds)
    return _element(PROJECTION, _element(PROJECTION_TYPE, b"\x01") + _element(PROJECTION_PRIVATE, private))


def _new_tracks(b: bytes, n_size: int, payload: int, end: int, projection: bytes) -> bytes:
    """``Tracks`` rebuilt with ``projection`` in the video track's ``Video`` (its reserved ``Void`` and old CRC-32s dropped)."""
    parts = []
    for eid, s, n, p, e in _children(b, payload, end):
        if eid == CRC32:
            continue
        if eid != TRACK_ENTRY:
            parts.append(b[s:e])
            continue
        entry = _children(b, p, e)
        video = any(k == TRACK_TYPE and b[cp:ce] == b"\x01" for k, _, _, cp, ce in entry)
        if not video:
            parts.append(b[s:e])
            continue
        kept = []
        for k, cs, cn, cp, ce in entry:
            if k in (CRC32, VOID):  # the entry's own reserved space goes to the projection
                continue
            if k == VIDEO:
                inner = [b[gs:ge] for g, gs, _, _, ge in _children(b, cp, ce) if g not in (PROJECTION, CRC32)]
                kept.append(_with_crc(VIDEO, b, cp, ce, cn, [*inner, projection]))
            else:
                kept.append(b[cs:ce])
        parts.append(_with_crc(TRACK_ENTRY, b, p, e, n, kept))
    return _with_crc(TRACKS, b, payload, end, n_size, parts)


def _header(path: Path) -> tuple[bytes, int, list[tuple[int, int, int, int, int]]]:
    """The file's first bytes, the Segment's payload start, and the Segment's children that lie wholly in them
    (the header elements; the clusters that follow are not read)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    try:
        i = 0
        while True:  # the EBML header, then the Segment
            eid, n_id = _read_id(head, i)
            size, n_size = _read_size(head, i + n_id)
            if eid == SEGMENT:
                break
            if size is None:
                raise ValueError("an element of unknown size before the Segment")
            i += n_id + n_size + size
        payload = i + n_id + n_size
        end = len(head) if size is None else min(len(head), payload + size)
        elements, j = [], payload
        while j < end:
            eid, n_id = _read_id(head, j)
            esize, n_size = _read_size(head, j + n_id)
            if esize is None or j + n_id + n_size + esize > len(head):
                break
            elements.append((eid, j, n_size, j + n_id + n_size, j + n_id + n_size + esize))
            j += n_id + n_size + esize
    except (ValueError, IndexError) as err:
        raise S3DError(path, f"not a Matroska file this tool can read ({err})") from None
    return head, payload, elements


def add_projection(path: Path, bounds: tuple[int, int, int, int]) -> None:
    """Give the video track of the Matroska file ``path`` an equirectangular ``Projection`` with ``bounds``."""
    path = Path(path)
    head, seg_payload, elements = _header(path)
    tracks = next((e for e in elements if e[0] == TRACKS), None)
    if tracks is None:
        raise S3DError(path, "no Tracks element at the start of this Matroska file")
    _, t_start, t_n, t_payload, t_end = tracks
    new_tracks = _new_tracks(head, t_n, t_payload, t_end, projection_element(bounds))
    grow = len(new_tracks) - (t_end - t_start)
    voids = [e for e in elements if e[0] == VOID and e[4] <= t_start and (e[4] - e[1]) - grow >= 2]
    if not voids:
        raise S3DError(path, "no reserved space before the Tracks element for the Projection (use video.format=mp4 for VR180 metadata)")
    _, v_start, _, _, v_end = voids[-1]
    void_total = v_end - v_start - grow
    new_void = _element(VOID, bytes(void_total - 2), 1) if void_total - 2 < 127 else _element(VOID, bytes(void_total - 9), 8)
    moved = {eid: s for eid, s, _, _, _ in elements if v_end <= s <= t_start}  # elements that move up by ``grow``
    new_heads = []
    for eid, s, n, p, e in elements:
        if eid != SEEKHEAD or s >= v_start:
            continue
        seeks = []
        for k, ks, _, kp, ke in _children(head, p, e):
            if k == CRC32:
                continue  # recomputed below
            if k != SEEK:
                seeks.append(head[ks:ke])
                continue
            fields = {f: (fp, fe) for f, _, _, fp, fe in _children(head, kp, ke)}
            target = int.from_bytes(head[slice(*fields[SEEK_ID])], "big")
            pos_p, pos_e = fields[SEEK_POSITION]
            position = int.from_bytes(head[pos_p:pos_e], "big")
            if seg_payload + position in moved.values() and target in moved:
                position -= grow
            entry = head[kp:pos_p] + position.to_bytes(pos_e - pos_p, "big") + head[pos_e:ke]
            seeks.append(_id_bytes(SEEK) + head[ks + len(_id_bytes(SEEK)) : kp] + entry)
        new_heads.append((s, e, _with_crc(SEEKHEAD, head, p, e, n, seeks)))
    if any(len(new) != e - s for s, e, new in new_heads):
        raise S3DError(path, "the SeekHead would change size; not extended")
    out = bytearray(head[:t_end])
    for s, e, new in new_heads:
        out[s:e] = new
    rebuilt = bytes(out[:v_start]) + new_void + bytes(out[v_end:t_start]) + new_tracks
    if len(rebuilt) != t_end:
        raise S3DError(path, "the rebuilt header does not line up; not extended")
    with atomic_output(path, overwrite=True) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(rebuilt)
        src.seek(t_end)
        shutil.copyfileobj(src, dst, 1 << 20)


def read_projection(path: Path) -> list[tuple[int, bytes]]:
    """``(ProjectionType, ProjectionPrivate)`` of each track's ``Projection`` (for tests and checks)."""
    head, _, elements = _header(Path(path))
    found = []

    def walk(start: int, end: int) -> None:
        for eid, _, _, p, e in _children(head, start, end):
            if eid in (TRACK_ENTRY, VIDEO):
                walk(p, e)
            elif eid == PROJECTION:
                fields = {k: head[cp:ce] for k, _, _, cp, ce in _children(head, p, e)}
                found.append((int.from_bytes(fields.get(PROJECTION_TYPE, b"\x00"), "big"), fields.get(PROJECTION_PRIVATE, b"")))

    for eid, _, _, p, e in elements:
        if eid == TRACKS:
            walk(p, e)
    return found
