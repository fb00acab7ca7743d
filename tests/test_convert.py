"""End to end: convert.py on videos and photos with the random-weight test backend (its output is not depth)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import make_video, textured_frame
from PIL import Image

from s3d.config import PROJECT_ROOT, compose
from s3d.convert import convert
from s3d.errors import S3DError

TEST_BACKEND = "depth=tiny_random"  # random weights, for tests only


def run_convert(*overrides: str) -> list[Path]:
    return convert(compose("convert", [TEST_BACKEND, "quiet=true", *overrides]))


def streams(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out = {
            "size": (v.codec_context.width, v.codec_context.height),
            "video_meta": dict(v.metadata),
            "audio": [(s.codec_context.name, s.codec_context.channels) for s in c.streams.audio],
            "subtitle": len(c.streams.subtitles),
            "duration": c.duration / av.time_base if c.duration else None,
        }
        out["times"] = [round(f.time, 3) for f in c.decode(video=0)]
    return out


def test_sbs_mkv_doubles_width_keeps_audio_frames_timestamps_and_flags_stereo(sample: Path, tmp_path: Path):
    out = run_convert(f"input={sample}", f"output={tmp_path / 'o.mkv'}")[0]
    src, dst = streams(sample), streams(out)
    assert dst["size"] == (2 * src["size"][0], src["size"][1])
    assert dst["video_meta"]["stereo_mode"] == "left_right"
    assert dst["audio"] == src["audio"] == [("vorbis", 2)]  # copied, not re-encoded
    assert dst["times"] == src["times"] and len(dst["times"]) == 24
    assert abs(dst["duration"] - src["duration"]) < 0.05
    # The flag is the Matroska StereoMode element (id 0x53B8), which players read, not a tag.
    assert b"\x53\xb8" in out.read_bytes() and b"stereo_mode" not in out.read_bytes()


@pytest.mark.parametrize(
    "layout,size,mode",
    [
        ("half_sbs", (64, 48), "left_right"),
        ("full_ou", (64, 96), "top_bottom"),
        ("half_ou", (64, 48), "top_bottom"),
        ("full_cross", (128, 48), "right_left"),
        ("half_cross", (64, 48), "right_left"),
        ("full_rgbd", (128, 48), None),  # a picture and its depth: no stereo flag
        ("half_rgbd", (64, 48), None),
        ("anaglyph", (64, 48), None),
    ],
)
def test_layouts(tiny_video: Path, layout, size, mode):
    out = run_convert(f"input={tiny_video}", f"layout={layout}")[0]
    info = streams(out)
    assert info["size"] == size and info["video_meta"].get("stereo_mode") == mode
    assert out.name.startswith("clip_") and out.suffix == ".mkv"


def test_default_output_name_and_no_overwrite(tiny_video: Path):
    out = run_convert(f"input={tiny_video}")[0]
    assert out == tiny_video.with_name("clip_LRF_Full_SBS.mkv")
    before = out.stat().st_mtime_ns
    with pytest.raises(S3DError, match="exists; pass overwrite=true"):
        run_convert(f"input={tiny_video}")
    assert out.stat().st_mtime_ns == before
    run_convert(f"input={tiny_video}", "overwrite=true")
    assert out.stat().st_mtime_ns != before


def test_mp4_output_keeps_aac(tiny_video: Path, tmp_path: Path):
    out = run_convert(f"input={tiny_video}", f"output={tmp_path / 'x.mp4'}")[0]
    info = streams(out)
    assert info["size"] == (128, 48) and info["audio"] == [("aac", 2)] and len(info["times"]) == 6


def test_mp4_reencodes_vorbis_to_aac(sample: Path, tmp_path: Path):
    out = run_convert(f"input={sample}", f"output={tmp_path / 'x.mp4'}", "video.preset=ultrafast")[0]
    assert streams(out)["audio"] == [("aac", 2)]


def test_variable_frame_rate_kept(tmp_path: Path):
    pts = [0, 40, 120, 130, 300, 310, 500]
    src = make_video(tmp_path / "vfr.mkv", frames=len(pts), pts=pts, audio=False)
    out = run_convert(f"input={src}", f"output={tmp_path / 'o.mkv'}")[0]
    assert streams(out)["times"] == [p / 1000 for p in pts]


def test_odd_frame_size(tmp_path: Path):
    # libx264 needs even sizes, so the odd clip is made with a codec that takes any size.
    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w", format="matroska") as out:
        s = out.add_stream("ffv1", rate=24)
        s.width, s.height, s.pix_fmt = 65, 49, "yuv444p"
        for i in range(4):
            f = av.VideoFrame.from_ndarray(textured_frame(49, 65, i), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    info = streams(run_convert(f"input={src}", f"output={tmp_path / 'o.mkv'}")[0])
    assert info["size"] == (130, 50) and len(info["times"]) == 4  # 49 rows padded to 50 for 4:2:0


def test_rotated_phone_video_is_converted_upright(tmp_path: Path):
    src = make_video(tmp_path / "phone.mp4", width=64, height=48, rotation=90, audio=False)
    info = streams(run_convert(f"input={src}", f"output={tmp_path / 'o.mkv'}")[0])
    assert info["size"] == (2 * 48, 64)


def test_eye_right_and_center(tiny_video: Path, tmp_path: Path):
    for eye in ("right", "center"):
        out = run_convert(f"input={tiny_video}", f"eye={eye}", f"output={tmp_path / (eye + '.mkv')}")[0]
        assert streams(out)["size"] == (128, 48)


# --- photos -------------------------------------------------------------------------------------


def test_photo_to_sbs_and_wiggle_gif(tmp_path: Path):
    src = tmp_path / "p.png"
    Image.fromarray(textured_frame(40, 60)).save(src)
    out, gif = run_convert(f"input={src}")
    assert out.name == "p_LRF_Full_SBS.png" and Image.open(out).size == (120, 40)
    g = Image.open(gif)
    assert gif.name == "p_wiggle.gif" and g.n_frames == 2 and g.size == (60, 40)
    left = np.asarray(Image.open(out))[:, :60]
    assert np.array_equal(left, textured_frame(40, 60))  # the input eye is kept as it is


def test_mpo_stereo_photo_is_repacked_from_its_real_eyes(tmp_path: Path):
    left, right = textured_frame(32, 48, 0), textured_frame(32, 48, 9)
    src = tmp_path / "cam.mpo"
    Image.fromarray(left).save(src, format="MPO", save_all=True, append_images=[Image.fromarray(right)], quality=100)
    out, gif = run_convert(f"input={src}", "layout=full_ou", "photo.quality=100")
    packed = np.asarray(Image.open(out)).astype(int)
    assert packed.shape == (64, 48, 3)
    err = lambda a, b: np.abs(a - b.astype(int)).mean()  # noqa: E731
    # JPEG blurs the texture, but each half is far closer to its own eye than to the other one.
    assert err(packed[:32], left) < 10 < 3 * err(packed[:32], right)
    assert err(packed[32:], right) < 10 < 3 * err(packed[32:], left)


# --- bad input: one line naming the file, nothing left behind -------------------------------------


def _bad(tmp_path: Path, name: str, content: bytes | None) -> Path:
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    return p


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "file is empty"),
        ("notes.mp4", b"these are not the frames you are looking for\n" * 20, "not a media file"),
    ],
)
def test_bad_input_files(tmp_path: Path, name, content, problem):
    src = _bad(tmp_path, name, content)
    with pytest.raises(S3DError, match=problem) as err:
        run_convert(f"input={src}")
    assert str(src) in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if content is not None else [])


def test_truncated_file(sample: Path, tmp_path: Path):
    src = tmp_path / "cut.webm"
    src.write_bytes(sample.read_bytes()[: sample.stat().st_size // 2])
    with pytest.raises(S3DError, match="truncated|corrupt") as err:
        run_convert(f"input={src}")
    assert str(src) in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["cut.webm"]


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return max(float((p.pts + p.duration) * p.time_base) for p in c.demux(a) if p.pts is not None)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])  # Matroska has no stream duration: the file's is the audio's
def test_audio_that_outlasts_the_video_converts_every_frame_and_keeps_the_audio(tmp_path: Path, suffix: str):
    src = make_video(tmp_path / f"trailer{suffix}", frames=6, audio_seconds=1.0)
    assert _audio_seconds(src) > 0.9 and len(streams(src)["times"]) == 6  # 0.25 s of video under 1 s of sound
    out = run_convert(f"input={src}", f"output={tmp_path / ('o' + suffix)}")[0]
    assert len(streams(out)["times"]) == 6
    assert abs(_audio_seconds(out) - _audio_seconds(src)) < 0.05


def test_a_cut_off_file_with_audio_is_still_truncated(tmp_path: Path):
    src = make_video(tmp_path / "long.mkv", frames=48, audio_seconds=2.0)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(S3DError, match="truncated|corrupt"):
        run_convert(f"input={cut}", f"output={tmp_path / 'o.mkv'}")
    assert not (tmp_path / "o.mkv").exists()


def test_audio_only_file(tmp_path: Path):
    src = make_video(tmp_path / "song.mka", video=False)
    with pytest.raises(S3DError, match="no video stream"):
        run_convert(f"input={src}")


def test_output_folder_missing_or_not_a_folder(tiny_video: Path, tmp_path: Path):
    with pytest.raises(S3DError, match="output folder does not exist"):
        run_convert(f"input={tiny_video}", f"output={tmp_path / 'no' / 'o.mkv'}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(S3DError, match="not a folder"):
        run_convert(f"input={tiny_video}", f"output={tmp_path / 'file' / 'o.mkv'}")


def test_interrupt_leaves_no_output(tiny_video: Path, tmp_path: Path, monkeypatch):
    from s3d.io import video

    calls = {"n": 0}
    real_write = video.VideoWriter.write

    def write_then_interrupt(self, rgb, pts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_write(self, rgb, pts)

    monkeypatch.setattr(video.VideoWriter, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_convert(f"input={tiny_video}", f"output={tmp_path / 'o.mkv'}", "batch_size=1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


# --- the CLI as a user runs it --------------------------------------------------------------------


def cli(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "convert.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_end_to_end_on_bundled_sample(sample: Path, tmp_path: Path):
    out = tmp_path / "bbb.mkv"
    r = cli(f"input={sample}", f"output={out}", TEST_BACKEND, "quiet=true", "video.preset=ultrafast", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    assert streams(out)["size"] == (2560, 720)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bbb.mkv"]  # no Hydra logs or outputs/ in the user's folder


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path: Path):
    r = cli(f"input={tmp_path / 'missing.mp4'}", TEST_BACKEND)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"s3d: error: {tmp_path / 'missing.mp4'}: no such file"]


def test_cli_missing_weights_line(sample: Path, tmp_path: Path):
    r = cli(f"input={sample}", f"output={tmp_path / 'o.mkv'}", "depth=densedepth", f"weights_dir={tmp_path}")
    assert r.returncode == 1
    assert "missing weights for depth backend 'densedepth'" in r.stderr and "make weights" in r.stderr
    assert not (tmp_path / "o.mkv").exists()


@pytest.mark.parametrize("threads", [1, 3])
def test_encoder_threads_reach_x264(tmp_path: Path, threads: int):
    """x264 writes its settings into the stream (an SEI): the thread count asked for is the one it used
    (tall enough a frame that x264 does not cap the threads by its rows of macroblocks)."""
    clip = make_video(tmp_path / "t.mp4", width=64, height=256, frames=4)
    out = run_convert(f"input={clip}", f"output={tmp_path / 'o.mkv'}", f"video.threads={threads}")[0]
    assert f" threads={threads} ".encode() in out.read_bytes()


def test_rgbd_from_the_command_line_is_the_picture_beside_the_depth_that_drives_the_warp(tmp_path: Path):
    src = make_video(tmp_path / "clip.mp4", width=64, height=48, frames=3)
    maps = tmp_path / "maps"
    run = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "convert.py"), f"input={src}", "layout=full_rgbd", f"depth_out={maps}", TEST_BACKEND, "video.crf=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "clip_RGBD.mkv"
    with av.open(str(out)) as c:
        assert "stereo_mode" not in c.streams.video[0].metadata
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    with av.open(str(src)) as c:
        inputs = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (48, 128, 3)
    for i, (frame, rgb) in enumerate(zip(frames, inputs)):
        assert np.abs(frame[:, :64] - rgb).mean() < 4  # the input eye, as it was (up to a second 4:2:0 round trip)
        depth = frame[:, 64:]
        assert np.abs(depth - depth.mean(axis=2, keepdims=True)).max() <= 2  # grey
        written = np.asarray(Image.open(maps / f"clip_depth_{i:06d}.png")).astype(float) / 65535 * 255
        assert np.abs(depth[..., 0] - written).mean() < 2 and depth.std() > 5  # the map that drove it, not a flat field


def test_rgbd_photo_and_refusals(tmp_path: Path):
    photo = tmp_path / "p.png"
    Image.fromarray(textured_frame(48, 64, 0)).save(photo)
    out = run_convert(f"input={photo}", "layout=half_rgbd", "photo.gif=false")[0]
    assert out.name == "p_RGBD_Half.png"
    packed = np.asarray(Image.open(out)).astype(int)
    assert packed.shape == (48, 64, 3) and np.abs(packed[:, 32:] - packed[:, 32:].mean(axis=2, keepdims=True)).max() <= 1
    with pytest.raises(S3DError, match="carries a depth backend's map"):
        run_convert(f"input={photo}", "layout=full_rgbd", f"checkpoint={PROJECT_ROOT / 'weights' / 'seed_baseline.safetensors'}")


def _sei_payload_types(path: Path) -> set[int]:
    """The SEI payload types in the first video packet, read from its length-prefixed NAL units (MP4, Matroska)."""
    with av.open(str(path)) as c:
        data = bytes(next(p for p in c.demux(video=0) if p.size))
    types, i = set(), 0
    while i + 5 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        nal = data[i + 4 : i + 4 + size]
        if nal and nal[0] & 0x1F == 6:  # SEI; its first message's type (types below 255 take one byte)
            types.add(nal[1])
        i += 4 + size
    return types


@pytest.mark.parametrize("layout,fmt,packing", [("full_sbs", "mkv", True), ("half_ou", "mp4", True), ("full_cross", "mkv", False), ("anaglyph", "mp4", False)])
def test_h264_frame_packing_sei_for_sbs_and_ou(tiny_video: Path, tmp_path: Path, layout: str, fmt: str, packing: bool):
    """TVs that read the H.264 frame packing arrangement SEI (payload type 45) switch to 3D by themselves; it
    cannot say "right eye first", so cross-eyed output has none, and neither has an anaglyph."""
    out = run_convert(f"input={tiny_video}", f"layout={layout}", f"video.format={fmt}", "segment_frames=4", f"output={tmp_path / ('o.' + fmt)}")[0]
    assert (45 in _sei_payload_types(out)) == packing
    assert 5 in _sei_payload_types(out)  # x264's own user-data SEI: the parse found the SEI units at all
