"""The st3d box in MP4: written after muxing, read back by ffprobe and by our own reader; the media untouched."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest
from conftest import SAMPLE, make_video

from s3d.errors import S3DError
from s3d.io.mp4box import add_stereo_box, read_st3d

ROOT = Path(__file__).resolve().parents[1]
FFPROBE = shutil.which("ffprobe")


def _frames_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            h.update(frame.to_ndarray(format="rgb24").tobytes())
            n += 1
    return n, h.hexdigest()


def _ffprobe_stereo(path: Path) -> str | None:
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v", "-show_streams", str(path)], capture_output=True, text=True, check=True).stdout
    return next((line.split("=", 1)[1] for line in out.splitlines() if line.startswith("type=")), None)


@pytest.mark.parametrize(("layout", "mode", "ffprobe_type"), [("full_sbs", 2, "side by side"), ("half_ou", 1, "top and bottom")])
def test_convert_py_writes_st3d_into_mp4(tmp_path, layout, mode, ffprobe_type):
    out = tmp_path / "o.mp4"
    args = [sys.executable, "convert.py", f"input={SAMPLE}", f"output={out}", f"layout={layout}", "depth=tiny_random", "quiet=true"]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "no stereo flag" not in run.stderr  # the old warning is gone
    assert read_st3d(out) == [mode]
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1 and sum(1 for _ in c.decode(video=0)) == 24
    if FFPROBE:
        assert _ffprobe_stereo(out) == ffprobe_type


@pytest.mark.parametrize("faststart", [False, True])
def test_st3d_leaves_the_media_as_it_was(tmp_path, faststart):
    src = make_video(tmp_path / "src.mp4", width=64, height=48, frames=10)
    path = tmp_path / "v.mp4"
    with av.open(str(src)) as inp, av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    before = _frames_digest(path)
    top = path.read_bytes()
    assert (top.find(b"moov") < top.find(b"mdat")) == faststart  # both layouts of the file are covered
    add_stereo_box(path, "left_right")
    assert read_st3d(path) == [2] and _frames_digest(path) == before
    add_stereo_box(path, "top_bottom")  # again: replaced, not added twice
    assert read_st3d(path) == [1] and _frames_digest(path) == before
    if FFPROBE:
        assert _ffprobe_stereo(path) == "top and bottom"
        decode = subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
        assert decode.returncode == 0 and decode.stderr == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_st3d_refuses_a_file_that_is_not_mp4(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + b"junk" * 10)
    with pytest.raises(S3DError, match="moov"):
        add_stereo_box(bad, "left_right")
    assert bad.read_bytes().startswith(b"\x00\x00\x00\x10ftyp")
