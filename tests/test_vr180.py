"""VR180: the flat screen on each eye's 180-degree canvas, and the metadata VR180 players read."""

from __future__ import annotations

import math
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
