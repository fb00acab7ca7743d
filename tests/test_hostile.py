"""Hostile input beyond the basic conversion tests: each gives a one-line error or a correct output,
and nothing of the user's is lost, overwritten or left half-written."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import make_video
from PIL import Image

from s3d.config import PROJECT_ROOT, compose
from s3d.convert import convert
from s3d.errors import S3DError

BASE = ["depth=tiny_random", "quiet=true", "video.preset=ultrafast"]


def run(*overrides: str) -> list[Path]:
    return convert(compose("convert", [*BASE, *overrides]))


def test_ten_bit_video_converts_to_eight_bit_sbs(tmp_path: Path):
    clip = make_video(tmp_path / "hdr.mkv", width=64, height=48, frames=5, pix_fmt="yuv420p10le")
    with av.open(str(clip)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    out = run(f"input={clip}", f"output={tmp_path / 'o.mkv'}")[0]
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (48, 128, 3)
    # the input eye survives the 10-bit -> 8-bit path: close to the source frame
    with av.open(str(clip)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(frames[0][:, :64].astype(int) - first.astype(int)).mean() < 6


def test_frame_above_the_size_limit_is_refused_before_any_work(tmp_path: Path):
    clip = make_video(tmp_path / "big.mp4", width=128, height=96, frames=2)
    with pytest.raises(S3DError, match=r"frame size 128x96 is above the limit max_pixels=10000"):
        run(f"input={clip}", "max_pixels=10000")
    photo = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(photo)
    with pytest.raises(S3DError, match=r"200x100 is above the limit"):
        run(f"input={photo}", "max_pixels=10000")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.mp4", "big.png"]


def test_weights_with_a_wrong_checksum_are_refused(tmp_path: Path):
    weights = tmp_path / "s3d_lite0.safetensors"
    shutil.copy(PROJECT_ROOT / "weights" / "s3d_lite0.safetensors", weights)
    with weights.open("r+b") as f:  # one flipped byte deep in the tensor data
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    from s3d.depth import build_depth

    cfg = compose("convert", ["depth=s3d_lite0", f"weights_dir={tmp_path}"]).depth
    with pytest.raises(S3DError, match=r"s3d_lite0.safetensors: sha256 is .*, expected .*: damaged"):
        build_depth(cfg)


def test_disk_full_mid_write_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch):
    from s3d.io import video

    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=8)
    real = video.VideoWriter.write
    calls = {"n": 0}

    def fills_up(self, rgb, pts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, rgb, pts)

    monkeypatch.setattr(video.VideoWriter, "write", fills_up)
    with pytest.raises(S3DError, match="No space left on device"):
        run(f"input={clip}", f"output={tmp_path / 'o.mkv'}", "batch_size=1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_disk_full_when_joining_keeps_the_finished_segments(tmp_path: Path, monkeypatch):
    from s3d.io import video

    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=8)

    def fills_up(self, packet):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video.VideoWriter, "write_packet", fills_up)
    with pytest.raises(S3DError, match="No space left on device"):
        run(f"input={clip}", f"output={tmp_path / 'o.mkv'}", "segment_frames=4")
    assert not (tmp_path / "o.mkv").exists()
    work = tmp_path / ".o.mkv.s3d-work"
    assert sorted(p.name for p in work.iterdir()) == ["manifest.json", "seg_00000.mkv", "seg_00001.mkv"]  # room made, run again


def test_existing_output_is_never_replaced_without_overwrite(tmp_path: Path):
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=3)
    out = tmp_path / "o.mkv"
    out.write_bytes(b"the user's file")
    with pytest.raises(S3DError, match="exists; pass overwrite=true"):
        run(f"input={clip}", f"output={out}")
    assert out.read_bytes() == b"the user's file"


def test_ctrl_c_on_the_cli_exits_130_and_leaves_nothing(tmp_path: Path):
    import signal
    import time

    clip = make_video(tmp_path / "c.mp4", width=320, height=240, frames=240)
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "convert.py"), f"input={clip}", f"output={tmp_path / 'o.mkv'}", *BASE, "batch_size=1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it, whoever started the tests: a shell's background job inherits
        # SIGINT ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Interrupt mid-film: once the first segment's temporary file is open.
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob(".o.mkv.s3d-work/.seg_*partial*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1].startswith("s3d: interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_video_frame_size_is_checked_before_any_decode(tmp_path: Path, monkeypatch):
    """A huge MJPEG costs hundreds of MB per decoded frame: the declared size is refused first."""
    import s3d.io.video as video

    clip = make_video(tmp_path / "big.mp4", width=128, height=96, frames=2)
    real = video._open_input

    class NoDecode:
        def __init__(self, container):
            self.container = container

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.container.close()

        def __getattr__(self, name):
            return getattr(self.container, name)

        def decode(self, *args, **kwargs):
            raise AssertionError("a frame was decoded before the size check")

    monkeypatch.setattr(video, "_open_input", lambda path: NoDecode(real(path)))
    with pytest.raises(S3DError, match=r"frame size 128x96 is above the limit max_pixels=10000"):
        video.probe_video(clip, max_pixels=10000)
    with pytest.raises(AssertionError, match="decoded before"):  # the stand-in does stop a decode
        video.probe_video(clip, max_pixels=10**6)
