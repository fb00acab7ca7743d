"""VR180: the flat screen on each eye's 180-degree canvas, and the metadata VR180 players read."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import make_video

from s3d.io.mp4box import read_st3d, read_sv3d
from s3d.layout import pack, packed_size
from s3d.layout.vr180 import place_on_canvas, screen_grid, vr180_canvas_size

ROOT = Path(__file__).resolve().parents[1]


def test_the_screen_is_a_pinhole_view_of_a_flat_picture():
    """A canvas pixel at longitude ``lon`` on the equator shows the frame's column at ``tan(lon) / tan(fov / 2)``
    of its half-width; the frame's edges sit at +-fov/2; above and below, the screen's rows curve as lines
    of a plane do on a sphere (a row's latitude shrinks away from the centre)."""
    n, fov = 360, 90.0
    grid = screen_grid(n, 90, 160, fov)[0].double()
    centre = n // 2
    for lon in (0.25, 20.25, 44.75):  # pixel centres: (j + 0.5) / n * 180 - 90 degrees
        j = round((lon + 90) / 180 * n - 0.5)
        assert grid[centre, j, 0].item() == pytest.approx(math.tan(math.radians(lon)) / math.tan(math.radians(fov / 2)), abs=1e-6)
    edge = round((45.25 + 90) / 180 * n - 0.5)  # just past the edge of the screen: outside [-1, 1]
    assert grid[centre, edge, 0] > 1 and grid[centre, edge - 1, 0] < 1
    # The top edge of the screen (v = -1) is higher at the centre than at the side: a plane seen from inside.
    top_rows = [(grid[:, j, 1] < -1).sum().item() for j in (centre, edge - 1)]
    assert top_rows[0] < top_rows[1]  # fewer rows above it in the middle: it is higher there


def test_a_picture_is_placed_upright_in_the_middle_and_black_around_it():
    img = torch.zeros(1, 3, 90, 160)
    img[:, 0, :45] = 1  # top half red
    img[:, 2, :, 80:] = 1  # right half blue
    canvas = place_on_canvas(img, screen_grid(200, 90, 160, 90.0))[0]
    assert canvas[:, :20].abs().max() == 0 and canvas[:, :, :20].abs().max() == 0  # outside the screen: black
    c = 100
    assert canvas[0, c - 10, c].item() > 0.9 and canvas[0, c + 10, c].item() < 0.1  # red above the middle
    assert canvas[2, c, c + 10].item() > 0.9 and canvas[2, c, c - 10].item() < 0.1  # blue right of the middle


def test_pack_size_and_default_canvas_keep_the_pixel_density():
    assert packed_size("vr180", 720, 1280, 512) == (512, 1024)
    n = vr180_canvas_size(720, 1280, 0, 90.0)
    assert n % 2 == 0 and abs(n - math.pi * 1280 / 2) <= 2  # one canvas pixel per frame pixel at the centre
    left, right = torch.rand(1, 3, 30, 40), torch.rand(1, 3, 30, 40)
    out = pack(left, right, "vr180", canvas=64, screen_degrees=100)
    assert out.shape == (1, 3, 64, 128) and not torch.equal(out[..., :64], out[..., 64:])


def test_convert_py_writes_vr180_mp4_with_st3d_and_sv3d(tmp_path: Path):
    src = make_video(tmp_path / "street.mp4", width=96, height=64, frames=4, audio_seconds=0.5)
    args = [sys.executable, "convert.py", f"input={src}", "layout=vr180", "vr180.canvas=128", "video.format=mp4", "depth=tiny_random", "quiet=true"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "street_180x180_3dh_LR.mp4"
    assert read_st3d(out) == [2] and read_sv3d(out) == [(0, 0, 0x40000000, 0x40000000)]
    with av.open(str(out)) as c:  # FFmpeg's own parser reads the sv3d box as a (tiled) equirectangular projection
        assert "SPHERICAL" in {x.type.name for x in next(c.decode(video=0)).side_data}
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (128, 256, 3)
    f = frames[0]
    assert f[:8, :8].max() < 20 and f[:8, 128:136].max() < 20  # corners of both canvases: black
    assert f[60:68, 60:68].mean() > 20 and f[60:68, 188:196].mean() > 20  # the screen in the middle of each
    with av.open(str(src)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs(f[64, 64] - first[32, 48]).max() < 40  # the left canvas's centre shows the frame's centre


def _check_header(path: Path) -> None:
    """Every SeekHead entry points at an element of its id; every CRC-32 matches the data after it."""
    import struct
    import zlib

    from s3d.io import matroska as mk

    head, seg_payload, elements = mk._header(path)
    starts = {s: eid for eid, s, *_ in elements}
    masters = (mk.SEEKHEAD, mk.TRACKS, 0x1549A966, 0x1254C367, 0x1C53BB6B)  # SeekHead, Tracks, Info, Tags, Cues
    for eid, _, _, p, e in elements:
        if eid not in masters:
            continue
        children = mk._children(head, p, e)
        if children and children[0][0] == mk.CRC32:
            _, _, _, cp, ce = children[0]
            assert struct.unpack("<I", head[cp:ce])[0] == zlib.crc32(head[ce:e]), f"CRC-32 of element {eid:#x}"
        if eid == mk.SEEKHEAD:
            for k, _, _, kp, ke in children:
                if k == mk.SEEK:
                    f = {fid: head[fp:fe] for fid, _, _, fp, fe in mk._children(head, kp, ke)}
                    at = seg_payload + int.from_bytes(f[mk.SEEK_POSITION], "big")
                    if at in starts:
                        assert starts[at] == int.from_bytes(f[mk.SEEK_ID], "big")
                    else:
                        assert at >= max(starts)  # an element past the header (cues, clusters)


def test_the_matroska_projection_is_added_without_moving_the_clusters(tmp_path: Path):
    from s3d.config import compose
    from s3d.convert import convert
    from s3d.io.matroska import add_projection, read_projection

    src = make_video(tmp_path / "c.mp4", width=64, height=48, frames=30)
    plain = convert(compose("convert", [f"input={src}", "depth=tiny_random", "quiet=true", f"output={tmp_path / 'p.mkv'}", "segment_frames=8"]))[0]
    vr = tmp_path / "vr.mkv"
    vr.write_bytes(plain.read_bytes())
    add_projection(vr, (0, 0, 0x40000000, 0x40000000))
    a, b = plain.read_bytes(), vr.read_bytes()
    assert len(a) == len(b) and a != b
    last_change = next(i for i in range(len(a) - 1, -1, -1) if a[i] != b[i])
    assert last_change < 1024  # only the header changed: clusters and cues are byte for byte where they were
    assert read_projection(plain) == [] and read_projection(vr) == [(1, bytes(12) + bytes.fromhex("4000000040000000"))]
    _check_header(plain)
    _check_header(vr)
    with av.open(str(vr)) as c, av.open(str(plain)) as d:
        got, want = list(c.decode(video=0)), list(d.decode(video=0))
        assert len(got) == len(want) == 30 and all(np.array_equal(x.to_ndarray(), y.to_ndarray()) for x, y in zip(got, want))
        assert "SPHERICAL" in {x.type.name for x in got[0].side_data}  # FFmpeg's own demuxer reads it
        assert len(c.streams.audio) == 1
        s = c.streams.video[0]
        c.seek(int(0.8 / s.time_base), stream=s)  # the cues still point at the clusters
        assert next(c.decode(video=0)).time <= 0.8


def test_convert_py_writes_vr180_mkv_with_a_projection(tmp_path: Path):
    from s3d.io.matroska import read_projection

    src = make_video(tmp_path / "street.mp4", width=96, height=64, frames=4)
    args = [sys.executable, "convert.py", f"input={src}", "layout=vr180", "vr180.canvas=128", "depth=tiny_random", "quiet=true"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "street_180x180_3dh_LR.mkv"
    assert read_projection(out) == [(1, bytes(12) + bytes.fromhex("4000000040000000"))]
    with av.open(str(out)) as c:
        assert c.streams.video[0].metadata["stereo_mode"] == "left_right"
        assert {x.type.name for x in next(c.decode(video=0)).side_data} >= {"SPHERICAL", "STEREO3D"}


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
def test_ffprobe_reads_the_vr180_projection(tmp_path: Path, fmt: str):
    src = make_video(tmp_path / "c.mp4", width=64, height=48, frames=3)
    out = tmp_path / f"o.{fmt}"
    args = [sys.executable, "convert.py", f"input={src}", f"output={out}", "layout=vr180", "vr180.canvas=64", "depth=tiny_random", "quiet=true"]
    assert subprocess.run(args, cwd=ROOT, capture_output=True, text=True).returncode == 0
    shown = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_streams", str(out)], capture_output=True, text=True, check=True).stdout
    lines = set(shown.splitlines())
    assert {"side_data_type=Spherical Mapping", "projection=tiled equirectangular", "side_data_type=Stereo 3D", "type=side by side"} <= lines


def test_a_matroska_file_without_room_for_the_projection_is_still_written(tmp_path: Path, monkeypatch, caplog):
    import s3d.convert as convert_module
    import s3d.io.segments as segments_module
    from s3d.config import compose
    from s3d.errors import S3DError

    def no_room(path, bounds):
        raise S3DError(path, "no reserved space before the Tracks element")

    monkeypatch.setattr(segments_module, "add_projection", no_room)
    src = make_video(tmp_path / "c.mp4", width=64, height=48, frames=3)
    out = convert_module.convert(compose("convert", [f"input={src}", "layout=vr180", "vr180.canvas=64", "depth=tiny_random", "quiet=true"]))[0]
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
    assert "no Projection element written" in caplog.text and out.name.endswith("_180x180_3dh_LR.mkv")
