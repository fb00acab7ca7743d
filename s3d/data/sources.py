"""Training views from real stereo sources: pairs folders for the stereo teacher (and :mod:`s3d.data.pairs`).

One function per kind of source, each writing rectified pairs (horizontal parallax only) as
``OUT/image_0/NAME.png`` (left) + ``OUT/image_1/NAME.png`` (right) and returning ``OUT``:

* :func:`equirect_photo_views` -- stereo 360 photos (over-under equirectangular, omnidirectional
  stereo): views at several yaws, the same yaw cut from both eyes.
* :func:`vr_video_views` -- stereo VR videos (360 or VR180, over-under or side by side): every
  ``every``-th frame, several yaws of a 360 frame, a few yaws around the centre of a VR180 frame. The
  projection comes from the file's spherical metadata: a Spherical Video V2 mesh (``sv3d/proj/mshp``,
  which carries each eye's calibration), V2 ``equi`` bounds, the V1 XML's cropped area, or the name.
* :func:`stereo_photo_views` -- side-by-side stereo JPEGs and MPO photos: the eyes resized, then
  aligned by a global shift (no negative disparity, no vertical offset).

Each folder is cached: a ``done`` marker holds the sources' sha256 and the settings, and a second call
with the same ones returns at once. Every source is checked for vertical parallax by block matching
(:func:`measure_parallax`) and refused (:class:`Unrectified`) if its eyes are not rectified.

Views of omnidirectional stereo (ODS) 360 images default to the cylindrical projection: ODS eyes see
a point at one latitude, so cylindrical rows match exactly, while perspective views get a vertical
parallax towards the corners (measured on congo at 512 px wide: 81 % of corner matches off by more
than a pixel). VR180 eyes are two parallel cameras, so their views are perspective (exact at yaw 0).

``python -m s3d.data.sources OUT_ROOT`` builds all the sources of the shared data folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import shutil
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from s3d.data.films import film_layout, sample_frame_indices
from s3d.data.views import equirect_to_view, lonlat_inside, mesh_to_view, view_lonlat
from s3d.errors import S3DError
from s3d.io.atomic import atomic_output
from s3d.io.image import HEIF_SUFFIXES, PHOTO_SUFFIXES, read_photo, read_stereo_photo, to_uint8, write_photo
from s3d.io.mp4box import boxes, read_moov
from s3d.io.video import VIDEO_SUFFIXES, probe_video, read_frames_at
from s3d.io.weights import file_sha256
from s3d.layout import split

log = logging.getLogger(__name__)

VERSION = 1  # bump when the output of a function changes for the same settings: invalidates the caches
DEFAULT_YAWS = tuple(float(y) for y in range(0, 360, 45))
EVERY = 12  # every 0.4 s of the 30 fps clips: ~330 views in all, ~20-25 min of teacher labelling at 3-6 s a view
VR180_YAWS = (-15.0, 0.0, 15.0)
MAX_WIDTH, MIN_HEIGHT, ASPECT = 512, 256, 4 / 3  # views: the teacher needs >= 256 px high; cheap below ~640 wide
PHOTO_WIDTH = 640
# Left out of build_training_views by default, with the reason (measured with measure_parallax).
DEFAULT_EXCLUDE = {
    "GOPR0.left-right.jpg": "two GoPros side by side, not rectified: vertical parallax varies with height by "
    "+-4 px at 640 px wide (2 % scale difference), 46 % of matches off by more than 1.5 px",
}


class Unrectified(S3DError):
    """The eyes of a source have vertical parallax: not usable as rectified pairs."""


# ---------------------------------------------------------------------------------------------------
# Parallax check


@dataclass(frozen=True)
class Parallax:
    """Block-matching statistics of a pair (pixels at the pair's size; ``d = x_left - x_right``)."""

    matches: int
    disparity: tuple[float, float, float]  # 2nd, 50th, 98th percentile
    dy: float  # median vertical offset, ``y_right - y_left``
    dy_spread: float  # 90th percentile of |dy - median|
    vertical: float  # share of matches whose dy is more than 1.5 px from the median

    def rectified(self, max_dy: float = 1.0, max_vertical: float = 0.25, min_matches: int = 12) -> bool | None:
        """None where too little texture matched to tell."""
        if self.matches < min_matches:
            return None
        return abs(self.dy) <= max_dy and self.vertical <= max_vertical

    def __str__(self) -> str:
        d = self.disparity
        return f"{self.matches} matches, disparity {d[0]:.0f}/{d[1]:.0f}/{d[2]:.0f} px (2/50/98 %), dy {self.dy:+.1f} px, {100 * self.vertical:.0f} % off by > 1.5 px"


def _grey(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float tensor or ``(H, W, 3)`` uint8 array -> ``(H, W)`` float32 in [0, 1]."""
    if isinstance(x, torch.Tensor):
        return x.float().mean(0).numpy()
    return x.astype(np.float32).mean(-1) / 255


def _matches(left: np.ndarray, right: np.ndarray, grid: tuple[int, int], size: int, max_dx: int, max_dy: int, min_std: float, min_score: float) -> np.ndarray:
    h, w = left.shape
    r = size // 2
    if h < size + 2 * max_dy + 2 or w < size + 2 * max_dx + 2:
        return np.zeros((0, 4))
    out = []
    for y in np.linspace(r + max_dy, h - 1 - r - max_dy, grid[0]).astype(int):
        for x in np.linspace(r + max_dx, w - 1 - r - max_dx, grid[1]).astype(int):
            t = left[y - r : y + r + 1, x - r : x + r + 1]
            if t.std() < min_std:
                continue
            t = (t - t.mean()) / t.std()
            region = right[y - r - max_dy : y + r + max_dy + 1, x - r - max_dx : x + r + max_dx + 1].astype(np.float64)
            # window sums from an integral image: the std of every candidate window at once
            c1 = np.pad(region.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            c2 = np.pad((region * region).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
            box = lambda c: c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]  # noqa: E731
            n = size * size
            std = np.sqrt(np.maximum(box(c2) / n - (box(c1) / n) ** 2, 0))
            score = np.einsum("abij,ij->ab", sliding_window_view(region, (size, size)), t) / n / (std + 1e-6)
            iy, ix = np.unravel_index(np.argmax(score), score.shape)
            if score[iy, ix] < min_score or iy in (0, 2 * max_dy) or ix in (0, 2 * max_dx):
                continue  # weak, or at the edge of the search window (the true shift may lie beyond)
            out.append((x, y, max_dx - ix, iy - max_dy))
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def measure_parallax(
    left: torch.Tensor | np.ndarray,
    right: torch.Tensor | np.ndarray,
    grid: tuple[int, int] = (8, 10),
    size: int = 21,
    max_dx: int = 96,
    max_dy: int = 12,
    min_std: float = 0.03,
    min_score: float = 0.85,
) -> Parallax:
    """Match a grid of textured ``size``-px patches of ``left`` in ``right`` (zero-mean normalised cross
    correlation, integer shifts up to ``max_dx`` across and ``max_dy`` up and down).

    ``left, right``: ``(3, H, W)`` float in [0, 1] or ``(H, W, 3)`` uint8, one size.
    """
    m = _matches(_grey(left), _grey(right), grid, size, max_dx, max_dy, min_std, min_score)
    return _stats(m)


def _stats(m: np.ndarray) -> Parallax:
    if len(m) == 0:
        return Parallax(0, (0.0, 0.0, 0.0), 0.0, 0.0, 0.0)
    d, dy = m[:, 2], m[:, 3]
    med = float(np.median(dy))
    dev = np.abs(dy - med)
    p = np.percentile(d, [2, 50, 98])
    return Parallax(len(m), (float(p[0]), float(p[1]), float(p[2])), med, float(np.percentile(dev, 90)), float(np.mean(dev > 1.5)))


def _check_pairs(name: str, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Parallax:
    """Pool the matches of a few pairs of one source; raise :class:`Unrectified` if they show vertical parallax."""
    stats = _stats(np.concatenate([_matches(_grey(l), _grey(r), (8, 10), 21, 96, 12, 0.03, 0.85) for l, r in pairs]))
    if stats.rectified() is False:
        raise Unrectified(name, f"eyes not rectified ({stats})")
    if stats.rectified() is None:
        log.info("%s: too little texture to check the rectification (%d matches)", name, stats.matches)
    return stats


# ---------------------------------------------------------------------------------------------------
# Cache and output


def _key(sources: Sequence[Path], settings: dict) -> dict:
    """What the ``done`` marker must hold for the cache to count (as JSON gives it back)."""
    return json.loads(json.dumps({"sha256": [file_sha256(p) for p in sources], "settings": {**settings, "version": VERSION}}))


def _cached(folder: Path, key: dict) -> bool:
    try:
        done = json.loads((folder / "done").read_text())
    except (OSError, ValueError):
        return False
    if {k: done.get(k) for k in key} != key:
        return False
    return all((folder / sub / f"{n}.png").exists() for n in done.get("views", []) for sub in ("image_0", "image_1"))


def _start(folder: Path) -> None:
    """An empty pairs folder: no marker (an interrupted run is not complete), no views of old settings."""
    (folder / "done").unlink(missing_ok=True)
    for sub in ("image_0", "image_1"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir(parents=True)


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return to_uint8(t).contiguous().numpy()


def _write_pair(folder: Path, name: str, left: torch.Tensor, right: torch.Tensor) -> None:
    for sub, eye in (("image_0", left), ("image_1", right)):
        with atomic_output(folder / sub / f"{name}.png", overwrite=True) as tmp:
            write_photo(tmp, _to_uint8(eye))


def _finish(folder: Path, key: dict, views: list[str], **info) -> None:
    with atomic_output(folder / "done", overwrite=True) as tmp:
        tmp.write_text(json.dumps({**key, "views": views, **info}, indent=1, default=str) + "\n")


def count_views(folder: Path) -> int:
    return len(json.loads((folder / "done").read_text()).get("views", []))


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3) uint8 -> (1, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def _yaw_tag(yaw: float) -> str:
    return f"y{yaw:+06.1f}"


def clean_stem(path: Path) -> str:
    """A view-name prefix: the file stem without stereo tokens (``calf-left-right`` -> ``calf``)."""
    stem = re.sub(r"[._-]+(left[._-]?right|lr|sbs)$", "", path.stem, flags=re.I)
    return re.sub(r"[^A-Za-z0-9_+-]+", "_", stem) or "view"


# ---------------------------------------------------------------------------------------------------
# Views of panoramas


def view_size(
    px_per_deg: float, fov_deg: float, projection: str, max_width: int = MAX_WIDTH, min_height: int = MIN_HEIGHT, aspect: float = ASPECT
) -> tuple[int, int]:
    """``(h, w)`` of a view whose centre has about the source's resolution, at most ``max_width`` wide
    and at least ``min_height`` high (multiples of 8)."""
    f = px_per_deg * 180 / math.pi
    half = math.radians(fov_deg) / 2
    w = min(max_width, 2 * f * (math.tan(half) if projection == "perspective" else half))
    h = w / aspect
    if h < min_height:
        h, w = min_height, min_height * aspect
    return int(round(h / 8) * 8), int(round(w / 8) * 8)


def _stagger(yaws: Sequence[float]) -> float:
    """Half the smallest gap between the yaws (around the circle): the offset of every other frame."""
    ys = sorted(float(y) % 360 for y in yaws)
    if len(ys) < 2:
        return 0.0
    gaps = [b - a for a, b in zip(ys, ys[1:])] + [ys[0] + 360 - ys[-1]]
    return min(gaps) / 2


def _split_eyes(frame: np.ndarray, arrangement: str, left_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    left, right = split(_tensor(frame), f"full_{arrangement}", left_first)
    return left, right


def equirect_photo_views(
    src: Path | tuple[Path, Path],
    out_dir: Path,
    yaws: Sequence[float] = DEFAULT_YAWS,
    fov_deg: float = 90.0,
    size: tuple[int, int] | None = None,
    projection: str = "cylindrical",
    pitch_deg: float = 0.0,
    arrangement: str = "ou",
    left_first: bool = True,
    check: bool = True,
) -> Path:
    """Views of a stereo 360 photo: one per yaw, from both eyes.

    ``src``: one file packing both equirectangular eyes (``arrangement`` ``ou`` or ``sbs``, left eye first
    unless ``left_first=False``), or ``(left, right)`` files. ``size``: ``(h, w)`` of the views, None to
    match the photo's resolution (:func:`view_size`). Views are named ``<stem>_y+045.0``.
    """
    if not len(yaws):
        raise ValueError("yaws is empty")
    files = [Path(src)] if isinstance(src, (str, Path)) else [Path(p) for p in src]
    settings = dict(
        kind="equirect_photo",
        yaws=[float(y) for y in yaws],
        fov=fov_deg,
        size=size,
        projection=projection,
        pitch=pitch_deg,
        arrangement=arrangement,
        left_first=left_first,
        check=check,
    )
    key = _key(files, settings)
    out_dir = Path(out_dir)
    if _cached(out_dir, key):
        return out_dir
    if len(files) == 1:
        left, right = _split_eyes(read_photo(files[0]), arrangement, left_first)
    elif len(files) == 2:
        left, right = _tensor(read_photo(files[0])), _tensor(read_photo(files[1]))
    else:
        raise ValueError(f"src must be one packed photo or (left, right), got {len(files)} files")
    if left.shape != right.shape:
        raise S3DError(files[0], f"eyes differ in size: {tuple(left.shape[-2:])} and {tuple(right.shape[-2:])}")
    h_eye, w_eye = left.shape[-2:]
    size = tuple(size) if size else view_size(min(w_eye / 360, h_eye / 180), fov_deg, projection)
    yaw_t = torch.tensor([float(y) for y in yaws])
    lv = equirect_to_view(left, yaw_t, pitch_deg, fov_deg, size, projection)
    rv = equirect_to_view(right, yaw_t, pitch_deg, fov_deg, size, projection)
    stats = _check_pairs(str(files[0]), list(zip(lv, rv))) if check else None
    stem = clean_stem(files[0]) if len(files) == 1 else re.sub(r"[._-]*left$", "", clean_stem(files[0]), flags=re.I)
    _start(out_dir)
    names = []
    for yaw, l, r in zip(yaws, lv, rv):
        names.append(f"{stem}_{_yaw_tag(float(yaw) % 360)}")
        _write_pair(out_dir, names[-1], l, r)
    _finish(out_dir, key, names, size=list(size), parallax=asdict(stats) if stats else None)
    return out_dir


# ---------------------------------------------------------------------------------------------------
# Spherical metadata of VR videos

SPHERICAL_V1_UUID = bytes.fromhex("ffcc8263f8554a938814587a02521fdd")
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"sv3d", b"proj", b"udta"}
_SAMPLE_ENTRIES = {b"avc1", b"avc3", b"hvc1", b"hev1", b"vp09", b"av01", b"mp4v", b"encv"}


@dataclass
class Spherical:
    """How a VR video maps each eye to directions: ``equirect`` over ``lon_range`` x ``lat_range``
    (degrees), or ``mesh`` with one ``(2, gh, gw)`` lon/lat grid per eye (left first)."""

    kind: str  # "equirect" or "mesh"
    lon_range: tuple[float, float] = (-180.0, 180.0)
    lat_range: tuple[float, float] = (-90.0, 90.0)
    meshes: list[torch.Tensor] = field(default_factory=list)
    source: str = "name"  # what told us: mshp, equi, v1, name

    @property
    def full_360(self) -> bool:
        return self.kind == "equirect" and self.lon_range[1] - self.lon_range[0] >= 360


def _find(data: bytes, start: int, end: int, found: dict) -> None:
    for typ, _, body, stop in boxes(data, start, end, strict=False):
        if typ in _CONTAINERS:
            _find(data, body, stop, found)
        elif typ == b"stsd":
            _find(data, body + 8, stop, found)
        elif typ in _SAMPLE_ENTRIES:
            _find(data, body + 78, stop, found)
        elif typ == b"uuid" and data[body : body + 16] == SPHERICAL_V1_UUID:
            found.setdefault("v1", data[body + 16 : stop])
        elif typ in (b"mshp", b"equi", b"cbmp", b"st3d"):
            found.setdefault(typ.decode(), data[body:stop])


class _Bits:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | (self.data[self.pos >> 3] >> (7 - (self.pos & 7)) & 1)
            self.pos += 1
        return v

    def align(self) -> None:
        self.pos = (self.pos + 7) & ~7


def parse_meshes(mshp: bytes) -> list[torch.Tensor]:
    """The meshes of a Spherical Video V2 ``mshp`` box body (after its box header) as lon/lat grids.

    Each mesh -> ``(2, gh, gw)`` degrees (longitude towards the right, latitude up; ``-z`` is ahead),
    row 0 at the top of the eye's image (texture ``v = 1``). The mesh's vertices must form a regular grid
    in texture space (as the cameras' meshes do).
    """
    if len(mshp) < 12:
        raise ValueError("mshp box too short")
    encoding = mshp[8:12]
    payload = mshp[12:]
    if encoding == b"dfl8":
        payload = zlib.decompress(payload, -15)
    elif encoding != b"raw ":
        raise ValueError(f"unknown mesh encoding {encoding!r}")
    meshes = []
    for typ, _, body, stop in boxes(payload, strict=False):
        if typ != b"mesh":
            continue
        b = _Bits(payload[body:stop])
        b.read(1)
        n_coords = b.read(31)
        coords = np.array([struct.unpack(">f", b.read(32).to_bytes(4, "big"))[0] for _ in range(n_coords)], dtype=np.float64)
        b.read(1)
        n_verts = b.read(31)
        bits = max(1, math.ceil(math.log2(n_coords * 2)))
        idx = np.zeros(5, dtype=np.int64)
        verts = np.empty((n_verts, 5))
        for i in range(n_verts):
            for k in range(5):
                v = b.read(bits)
                idx[k] += (v >> 1) ^ -(v & 1)  # zigzag-coded delta
            verts[i] = coords[idx]
        us, vs = np.unique(np.round(verts[:, 3], 6)), np.unique(np.round(verts[:, 4], 6))
        if len(us) * len(vs) != n_verts:
            raise ValueError(f"mesh of {n_verts} vertices is not a regular texture grid ({len(us)} x {len(vs)})")
        grid = np.zeros((len(vs), len(us), 3))
        cols = np.searchsorted(us, np.round(verts[:, 3], 6))
        rows = len(vs) - 1 - np.searchsorted(vs, np.round(verts[:, 4], 6))
        grid[rows, cols] = verts[:, :3]
        x, y, z = grid[..., 0], grid[..., 1], -grid[..., 2]
        lon = np.degrees(np.arctan2(x, z))
        lat = np.degrees(np.arctan2(y, np.hypot(x, z)))
        meshes.append(torch.tensor(np.stack((lon, lat)), dtype=torch.float32))
    if not meshes:
        raise ValueError("mshp box holds no mesh")
    return meshes


def _v1_ranges(xml: bytes) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Longitude and latitude ranges of a Spherical Video V1 XML's cropped area (None: not equirect)."""
    try:
        root = ElementTree.fromstring(xml.decode("utf-8", "replace").strip("\x00 \n"))
    except ElementTree.ParseError:
        return None
    tags = {el.tag.split("}")[-1]: (el.text or "").strip() for el in root.iter()}
    if tags.get("ProjectionType", "equirectangular").lower() != "equirectangular":
        return None
    try:
        full_w, full_h = float(tags["FullPanoWidthPixels"]), float(tags["FullPanoHeightPixels"])
        left, top = float(tags["CroppedAreaLeftPixels"]), float(tags["CroppedAreaTopPixels"])
        w, h = float(tags["CroppedAreaImageWidthPixels"]), float(tags["CroppedAreaImageHeightPixels"])
    except (KeyError, ValueError):
        return (-180.0, 180.0), (-90.0, 90.0)
    lon0 = -180 + 360 * left / full_w
    lat1 = 90 - 180 * top / full_h
    return (lon0, lon0 + 360 * w / full_w), (lat1 - 180 * h / full_h, lat1)


def spherical(path: Path) -> Spherical:
    """The projection of a VR video, from its metadata (V2 mesh or equirect bounds, V1 XML) or its name
    (``360`` -> full sphere; ``vr180``/``180`` -> 180 x 180 degrees)."""
    found: dict = {}
    if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
        moov_box = read_moov(path)
        moov = moov_box[0] if moov_box else None
        if moov:
            _find(moov, 0, len(moov), found)
    if "mshp" in found:
        return Spherical("mesh", meshes=parse_meshes(found["mshp"]), source="mshp")
    if "equi" in found and len(found["equi"]) >= 20:
        top, bottom, left, right = (v / 2**32 for v in struct.unpack(">4I", found["equi"][4:20]))
        return Spherical("equirect", (-180 + 360 * left, 180 - 360 * right), (-90 + 180 * bottom, 90 - 180 * top), source="equi")
    if "cbmp" in found:
        raise S3DError(path, "cube-map projection is not supported")
    if "v1" in found and (ranges := _v1_ranges(found["v1"])):
        return Spherical("equirect", *ranges, source="v1")
    low = path.name.lower()
    if "vr180" in low or re.search(r"(^|[^0-9])180([^0-9]|$)", low):
        return Spherical("equirect", (-90.0, 90.0), (-90.0, 90.0))
    if "360" in low:
        return Spherical("equirect")
    raise S3DError(path, "cannot tell the VR projection (no spherical metadata, no 360/180 in the name)")


def video_fingerprint(path: Path) -> str:
    """sha256 of the video stream's packets: one for two files holding the same stream in other containers."""
    import av

    h = hashlib.sha256()
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            if packet.size:
                h.update(bytes(packet))
    return h.hexdigest()


def _resolution(sph: Spherical, eye_hw: tuple[int, int]) -> float:
    """Pixels per degree of an eye (the lower of the two axes)."""
    h, w = eye_hw
    if sph.kind == "mesh":
        m = sph.meshes[0]
        lon = float((m[0, m.shape[1] // 2, -1] - m[0, m.shape[1] // 2, 0]).abs())
        lat = float((m[1, 0, m.shape[2] // 2] - m[1, -1, m.shape[2] // 2]).abs())
    else:
        lon, lat = sph.lon_range[1] - sph.lon_range[0], sph.lat_range[1] - sph.lat_range[0]
    return min(w / lon, h / lat)


def _cut(sph: Spherical, eye: int, image: torch.Tensor, yaws: torch.Tensor, pitch: float, fov: float, size: tuple[int, int], projection: str) -> torch.Tensor:
    if sph.kind == "mesh":
        views, inside = mesh_to_view(image, sph.meshes[min(eye, len(sph.meshes) - 1)], yaws, pitch, fov, size, projection)
        if not bool(inside.all()):
            bad = sorted({float(y) for y, ok in zip(yaws, inside.flatten(1).all(1)) if not ok})
            raise ValueError(f"views at yaw {bad} look past the area the VR mesh covers; narrow fov_deg or the yaws")
        return views
    if not lonlat_inside(view_lonlat(yaws, pitch, fov, size, projection), sph.lon_range, sph.lat_range):
        raise ValueError(f"views at yaws {yaws.tolist()} look past the area the video covers ({sph.lon_range} x {sph.lat_range} degrees)")
    return equirect_to_view(image, yaws, pitch, fov, size, projection, sph.lon_range, sph.lat_range)


def vr_video_views(
    video: Path,
    out_dir: Path,
    every: int = EVERY,
    yaws: Sequence[float] | None = None,
    fov_deg: float | None = None,
    size: tuple[int, int] | None = None,
    projection: str | None = None,
    pitch_deg: float = 0.0,
    stagger: bool = True,
    layout: str = "auto",
    max_frames: int | None = None,
    check: bool = True,
) -> Path:
    """Views of every ``every``-th frame of a stereo VR video, the same yaws from both eyes.

    Defaults by projection: a full 360 video gets :data:`DEFAULT_YAWS`, ``fov_deg=90``, cylindrical views,
    and with ``stagger`` every other sampled frame turns by half the yaw step (more directions for the
    same number of views); a VR180 (or other partial) video gets :data:`VR180_YAWS`, ``fov_deg=80``,
    perspective views. ``layout``: ``auto`` (metadata, name, content) or ``full_ou``/``full_sbs``
    (``_rl`` for right eye first). Views are named ``<stem>_f000120_y+045.0``.
    """
    if yaws is not None and not len(yaws):
        raise ValueError("yaws is empty")
    video = Path(video)
    info = probe_video(video)
    sph = spherical(video)
    full = sph.full_360
    yaws = [float(y) for y in (yaws if yaws is not None else DEFAULT_YAWS if full else VR180_YAWS)]
    fov_deg = fov_deg or (90.0 if full else 80.0)
    projection = projection or ("cylindrical" if full else "perspective")
    offset = _stagger(yaws) if stagger and full else 0.0
    settings = dict(
        kind="vr_video",
        every=every,
        yaws=yaws,
        fov=fov_deg,
        size=size,
        projection=projection,
        pitch=pitch_deg,
        stagger=offset,
        layout=layout,
        max_frames=max_frames,
        check=check,
    )
    key = _key([video], settings)
    out_dir = Path(out_dir)
    if _cached(out_dir, key):
        return out_dir
    indices = sample_frame_indices(info.frames, every)[:max_frames]
    if not indices:
        raise S3DError(video, "no frames to sample")
    first = read_frames_at(info, indices[:1])[0]
    found = film_layout(video, layout, first)  # its half/full guess is moot: the projection sets each eye's aspect
    stem = clean_stem(video)
    names: list[str] = []
    stats = None
    eye_hw = None
    for k in range(0, len(indices), 4):  # a few frames at a time: seeking, not holding the whole clip
        chunk = indices[k : k + 4]
        for j, (idx, frame) in enumerate(zip(chunk, read_frames_at(info, chunk))):
            left, right = _split_eyes(frame, found.arrangement, found.left_first)
            if eye_hw is None:
                eye_hw = tuple(left.shape[-2:])
                size = tuple(size) if size else view_size(_resolution(sph, eye_hw), fov_deg, projection)
            turn = offset * ((k + j) % 2)
            yaw_t = torch.tensor([y + turn for y in yaws])
            lv = _cut(sph, 0, left, yaw_t, pitch_deg, fov_deg, size, projection)
            rv = _cut(sph, 1, right, yaw_t, pitch_deg, fov_deg, size, projection)
            if not names:
                if check:
                    stats = _check_pairs(str(video), list(zip(lv, rv)))
                _start(out_dir)
            for yaw, l, r in zip(yaw_t.tolist(), lv, rv):
                names.append(f"{stem}_f{idx:06d}_{_yaw_tag(yaw % 360 if full else yaw)}")
                _write_pair(out_dir, names[-1], l, r)
    _finish(
        out_dir,
        key,
        names,
        size=list(size),
        projection_from=sph.source,
        layout=found.arrangement,
        left_first=found.left_first,
        parallax=asdict(stats) if stats else None,
    )
    return out_dir


# ---------------------------------------------------------------------------------------------------
# Flat stereo photos


def _exif_transpose_eyes(path: Path, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the EXIF orientation of an MPO (its frames are read as stored) to both eyes."""
    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1)
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    if method is None:
        return left, right
    return tuple(np.asarray(Image.fromarray(e).transpose(method)) for e in (left, right))  # type: ignore[return-value]


def read_stereo_pair(path: Path, layout: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The two eyes of a stereo photo: an MPO (frame 1 = left), or a packed JPEG/PNG (``layout``
    ``full_sbs``, ``full_ou``, ``_rl`` for right first; ``auto`` = full side by side, left first).
    EXIF orientation applied. ``-> (left, right)`` each ``(H, W, 3) uint8``."""
    path = Path(path)
    if path.suffix.lower() == ".mpo":
        return _exif_transpose_eyes(path, *read_stereo_photo(path))
    name = "full_sbs" if layout == "auto" else layout
    left, right = split(torch.from_numpy(read_photo(path)).permute(2, 0, 1)[None], name.removesuffix("_rl"), not name.endswith("_rl"))
    return left[0].permute(1, 2, 0).numpy(), right[0].permute(1, 2, 0).numpy()


def align_pair(left: torch.Tensor, right: torch.Tensor, stats: Parallax, margin: int = 2) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Crop ``(3, H, W)`` eyes by a global shift so the disparities start at about 0 (converged cameras and
    mounted stereo cards have negative ones, which the teacher cannot match) and the median vertical
    offset is 0. ``-> (left, right, (sx, sy))``: ``d`` grew by ``sx``, ``right`` moved up by ``sy``."""
    if stats.rectified() is None:
        return left, right, (0, 0)
    sx = int(math.ceil(-stats.disparity[0])) + margin if stats.disparity[0] < -1 else 0
    sy = int(round(stats.dy))
    h, w = left.shape[-2:]
    if sx:
        left, right = left[..., : w - sx], right[..., sx:]
    if sy > 0:
        left, right = left[..., : h - sy, :], right[..., sy:, :]
    elif sy < 0:
        left, right = left[..., -sy:, :], right[..., : h + sy, :]
    return left, right, (sx, sy)


def stereo_photo_views(src: Path, out_dir: Path, width: int = PHOTO_WIDTH, layout: str = "auto", align: bool = True, check: bool = True) -> Path:
    """One pair from a stereo photo (see :func:`read_stereo_pair`), resized to ``width`` (Lanczos), then
    with ``align`` shifted by :func:`align_pair`. Named after the photo (``calf-left-right.jpg`` -> ``calf``)."""
    src = Path(src)
    settings = dict(kind="stereo_photo", width=width, layout=layout, align=align, check=check)
    key = _key([src], settings)
    out_dir = Path(out_dir)
    if _cached(out_dir, key):
        return out_dir
    left, right = read_stereo_pair(src, layout)
    if left.shape != right.shape:
        raise S3DError(src, f"eyes differ in size: {left.shape[:2]} and {right.shape[:2]}")
    h = round(left.shape[0] * width / left.shape[1])
    if h < MIN_HEIGHT:
        log.warning("%s: %d px high at %d px wide, below the %d px the teacher needs", src, h, width, MIN_HEIGHT)
    eyes = [_tensor(np.array(Image.fromarray(e).resize((width, h), Image.LANCZOS)))[0] for e in (left, right)]
    stats = measure_parallax(*eyes) if check or align else None
    shift = (0, 0)
    if align and stats is not None:
        eyes[0], eyes[1], shift = align_pair(eyes[0], eyes[1], stats)
    after = measure_parallax(*eyes) if check else None
    if after is not None and after.rectified() is False:
        raise Unrectified(src, f"eyes not rectified ({after})")
    _start(out_dir)
    name = clean_stem(src)
    _write_pair(out_dir, name, eyes[0], eyes[1])
    _finish(out_dir, key, [name], size=list(eyes[0].shape[-2:]), shift=list(shift), parallax=asdict(after) if after else None)
    return out_dir


# ---------------------------------------------------------------------------------------------------
# All sources of the shared data folder


@dataclass
class SourceResult:
    name: str  # the source's path under the shared root
    folder: Path | None  # None: left out
    views: int
    seconds: float
    cached: bool = False
    note: str = ""


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _timed(name: str, folder: Path, build) -> SourceResult:
    before = _mtime(folder / "done")
    t = time.perf_counter()
    try:
        out = build()
    except Unrectified as err:
        return SourceResult(name, None, 0, time.perf_counter() - t, note=f"left out: {err.problem}")
    return SourceResult(name, out, count_views(out), time.perf_counter() - t, cached=before is not None and _mtime(out / "done") == before)


def build_sources(
    shared_root: Path,
    out_root: Path,
    every: int = EVERY,
    yaws: Sequence[float] = DEFAULT_YAWS,
    exclude: dict[str, str] | Sequence[str] = tuple(DEFAULT_EXCLUDE),
) -> list[SourceResult]:
    """Build the training views of every stereo source in the shared data folder (see the module doc)
    under ``out_root/<kind>/<name>/``, one result per source (left-out ones with the reason).

    Not built: ``stereo_pairs/`` (pairs already), ``stereo_photos_mpo/`` (decoded in
    ``stereo_pairs/mpo_pillow``), and the evaluation data (``kitti2012_eval_only`` and the evaluation scenes
    live in ``stereo_pairs/``). ``exclude``: file names to leave out (default :data:`DEFAULT_EXCLUDE`).
    """
    shared_root, out_root = Path(shared_root), Path(out_root)
    if not shared_root.is_dir():
        raise S3DError(shared_root, "no such folder")
    reasons = exclude if isinstance(exclude, dict) else {n: DEFAULT_EXCLUDE.get(n, "excluded") for n in exclude}
    results: list[SourceResult] = []

    def rel(p: Path) -> str:
        return str(p.relative_to(shared_root))

    def run(src: Path, folder: Path, build) -> None:
        if src.name in reasons:
            results.append(SourceResult(rel(src), None, 0, 0.0, note=f"left out: {reasons[src.name]}"))
            return
        results.append(_timed(rel(src), folder, build))

    for photo in sorted((shared_root / "stereo_360_photos").glob("*.jp*g")):
        folder = out_root / "stereo_360_photos" / clean_stem(photo)
        run(photo, folder, lambda p=photo, f=folder: equirect_photo_views(p, f, yaws=yaws))

    videos = sorted(p for p in (shared_root / "stereo_video").rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    # prefer the copy of a stream whose metadata says most (a V2 mesh over V1 XML over none)
    rank = {"mshp": 0, "equi": 1, "v1": 2, "name": 3}
    projections = {p: spherical(p) for p in videos if p.name not in reasons}
    videos.sort(key=lambda p: (rank[projections[p].source] if p in projections else 9, str(p)))
    seen: dict[str, str] = {}
    for video in videos:
        if video.name not in reasons:
            fp = video_fingerprint(video)
            if fp in seen:
                results.append(SourceResult(rel(video), None, 0, 0.0, note=f"left out: the same video stream as {seen[fp]}"))
                continue
            seen[fp] = rel(video)
        folder = out_root / "vr_video" / clean_stem(video)
        full = video in projections and projections[video].full_360
        run(video, folder, lambda v=video, f=folder, full=full: vr_video_views(v, f, every=every, yaws=yaws if full else None))

    photos = sorted(p for p in (shared_root / "stereo_photos").glob("*") if p.is_file())
    for photo in photos:
        if photo.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        if photo.suffix.lower() in HEIF_SUFFIXES:  # an Apple spatial photo: Pillow reads HEIF only with pillow-heif
            results.append(SourceResult(rel(photo), None, 0, 0.0, note="left out: HEIF needs the pillow-heif plugin, not a dependency of the project"))
            continue
        folder = out_root / "stereo_photos" / clean_stem(photo)
        run(photo, folder, lambda p=photo, f=folder: stereo_photo_views(p, f))
    return results


def build_training_views(
    shared_root: Path,
    out_root: Path,
    every: int = EVERY,
    yaws: Sequence[float] = DEFAULT_YAWS,
    exclude: dict[str, str] | Sequence[str] = tuple(DEFAULT_EXCLUDE),
) -> list[Path]:
    """Build all sources (:func:`build_sources`) and return their pairs folders, for :func:`s3d.data.pairs.find_pairs`."""
    return [r.folder for r in build_sources(shared_root, out_root, every, yaws, exclude) if r.folder is not None]


def main(argv: list[str] | None = None) -> int:
    from s3d.config import PROJECT_ROOT

    parser = argparse.ArgumentParser(prog="python -m s3d.data.sources", description="Write training views (rectified stereo pairs) of the real stereo sources.")
    parser.add_argument("out_root", type=Path)
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--every", type=int, default=EVERY, help="every N-th frame of the videos")
    parser.add_argument("--yaw-step", type=float, default=45.0, help="degrees between the views of a 360 photo or frame")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    yaws = tuple(float(y) for y in np.arange(0, 360, args.yaw_step))
    t = time.perf_counter()
    try:
        results = build_sources(args.shared, args.out_root, args.every, yaws)
    except S3DError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for r in results:
        state = "cached" if r.cached else "wrote"
        print(f"{r.name:60s} {r.note}" if r.folder is None else f"{r.name:60s} {state} {r.views:4d} pairs in {r.seconds:6.1f} s -> {r.folder}")
    print(f"total: {sum(r.views for r in results)} pairs from {sum(r.folder is not None for r in results)} sources in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
