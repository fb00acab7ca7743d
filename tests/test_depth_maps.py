"""depth_out= writes the depth that drove each frame; depth_in= converts from maps a user edited or made elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import make_video
from PIL import Image

from s3d.config import compose
from s3d.convert import convert
from s3d.errors import S3DError

ROOT = Path(__file__).resolve().parents[1]


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)


def _convert(*overrides: str) -> list[Path]:
    return convert(compose("convert", ["depth=tiny_random", "quiet=true", *overrides]))


def test_depth_out_then_in_gives_the_same_conversion(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=6)
    maps = tmp_path / "maps"
    # Lossless video (crf 0): x264's output is not bit-identical from run to run here, its decoded frames are.
    first = _convert(f"input={clip}", f"output={tmp_path / 'a.mkv'}", f"depth_out={maps}", "segment_frames=4", "video.crf=0")[0]
    written = sorted(maps.iterdir())
    assert [p.name for p in written] == [f"clip_depth_{i:06d}.png" for i in range(6)]
    level = np.asarray(Image.open(written[0]))
    assert level.shape == (64, 96) and level.dtype == np.uint16 and level.max() > 255  # 16-bit, the full range used
    again = _convert(f"input={clip}", f"output={tmp_path / 'b.mkv'}", f"depth_in={maps}", "depth=s3d_lite0", "segment_frames=4", "video.crf=0")[0]  # no network
    a, b = _frames(first), _frames(again)
    # The maps are 16-bit: the disparity they give back is the one that drove the warp to < 1/65535 of its
    # range (a level in a few pixels, two after the YUV round trip); a wrong or 8-bit map moves far more.
    assert a.shape == b.shape == (6, 64, 192, 3) and np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.01


def test_an_edited_depth_map_changes_the_conversion(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=3)
    maps = tmp_path / "edited"
    maps.mkdir()
    for i in range(3):  # hand-made: the left half near, the right half far; another size than the frames
        m = np.zeros((32, 48), np.uint16)
        m[:, :24] = 65535
        Image.fromarray(m).save(maps / f"d{i}.png")
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 48), 128, np.uint8)).save(flat / f"d{i}.png")  # 8-bit maps are read too
    edited = _frames(_convert(f"input={clip}", f"output={tmp_path / 'e.mkv'}", f"depth_in={maps}")[0])
    uniform = _frames(_convert(f"input={clip}", f"output={tmp_path / 'u.mkv'}", f"depth_in={flat}")[0])
    right, left = (np.abs(edited[:, :, c] - uniform[:, :, c]).mean() for c in (slice(96, None), slice(None, 96)))
    assert right > 3 * left, (right, left)  # the rendered eye follows the maps; the input eye only x264's noise


def test_depth_maps_are_checked_before_any_work(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=4)
    maps = tmp_path / "maps"
    maps.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint16)).save(maps / f"d{i}.png")
    with pytest.raises(S3DError, match="depth_in has 3 depth map\\(s\\) for 4 frame\\(s\\)"):
        _convert(f"input={clip}", f"output={tmp_path / 'o.mkv'}", f"depth_in={maps}")
    out = tmp_path / "out_maps"
    out.mkdir()
    (out / "clip_depth_000000.png").write_bytes(b"x")
    with pytest.raises(S3DError, match="depth map exists; pass overwrite=true"):
        _convert(f"input={clip}", f"output={tmp_path / 'o.mkv'}", f"depth_out={out}")
    assert not (tmp_path / "o.mkv").exists()


def test_photo_depth_out_from_the_command_line(tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    maps = tmp_path / "maps"
    args = [sys.executable, "convert.py", f"input={photo}", f"output={tmp_path / 'o.png'}", f"depth_out={maps}", "depth=tiny_random", "photo.gif=false"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    depth = maps / "p_depth.png"
    assert np.asarray(Image.open(depth)).shape == (48, 64)
    back = _convert(f"input={photo}", f"output={tmp_path / 'b.png'}", f"depth_in={depth}", "photo.gif=false")[0]
    a, b = (np.asarray(Image.open(p)).astype(int) for p in (tmp_path / "o.png", back))
    assert np.abs(a - b).max() <= 1
