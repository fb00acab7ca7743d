"""3D films: every-N sampling by seeking, eye splitting per layout, layout detection, the DataModule."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from s3d.config import PROJECT_ROOT
from s3d.data.films import StereoFilmsDataModule, film_layout, read_frames_at, sample_frame_indices, split_eyes, vr_centre
from s3d.layout import pack
from s3d.layout.detect import detect_layout, from_content, from_name

PAIR = PROJECT_ROOT / "data" / "pairs"


def real_pair(name: str = "Teddy", size=(96, 128)) -> tuple[np.ndarray, np.ndarray]:
    """A real Middlebury pair, resized to ``size`` (h, w)."""
    load = lambda side: np.asarray(Image.open(PAIR / side / f"{name}.png").convert("RGB").resize(size[::-1], Image.BILINEAR))  # noqa: E731
    return load("image_0"), load("image_1")


def write_video(path: Path, frames: list[np.ndarray], codec: str = "ffv1", metadata: dict | None = None, gop: int | None = None) -> Path:
    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream(codec, rate=24)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
        for k, v in (metadata or {}).items():
            s.metadata[k] = v
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def packed_film(path: Path, layout: str, left_first: bool = True, frames: int = 3, metadata: dict | None = None) -> tuple[Path, np.ndarray, np.ndarray]:
    left, right = real_pair()
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    packed = pack(t(left), t(right), layout, left_first=left_first)[0]
    arr = (packed.permute(1, 2, 0) * 255).round().byte().numpy()
    return write_video(path, [arr] * frames, metadata=metadata), left, right


def barcode(i: int, h: int = 64, w: int = 128) -> np.ndarray:
    """Frame ``i`` with its index in 8 big black/white blocks (survives lossy coding)."""
    f = np.zeros((h, w, 3), np.uint8)
    for bit in range(8):
        if i >> bit & 1:
            f[:, bit * 16 : (bit + 1) * 16] = 255
    return f


def read_barcode(f: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8) if f[:, bit * 16 + 4 : bit * 16 + 12].mean() > 128)


def test_sample_frame_indices():
    assert sample_frame_indices(1000, 200) == [0, 200, 400, 600, 800]
    assert sample_frame_indices(5, 200) == [0]
    with pytest.raises(ValueError):
        sample_frame_indices(10, 0)


def test_seeking_reads_exactly_the_sampled_frames(tmp_path: Path):
    film = write_video(tmp_path / "f.mkv", [barcode(i) for i in range(100)], codec="libx264", gop=12)
    indices = sample_frame_indices(100, 7)
    assert [read_barcode(f) for f in read_frames_at(film, indices)] == indices


@pytest.mark.parametrize("layout", ["full_sbs", "half_sbs", "full_ou", "half_ou"])
@pytest.mark.parametrize("left_first", [True, False])
def test_split_eyes_per_layout(tmp_path: Path, layout, left_first):
    film, left, right = packed_film(tmp_path / "film.mkv", layout, left_first)
    frame = read_frames_at(film, [0])[0]
    order = f"{layout}" + ("" if left_first else "_rl")
    got_left, got_right = split_eyes(frame, film_layout(film, order, frame), None)
    assert got_left.shape == (3, 96, 128)  # half layouts are stretched back to the eye's aspect
    tol = 2 / 255 if layout.startswith("full") else 0.06
    err = lambda a, b: (a - torch.from_numpy(b).permute(2, 0, 1).float() / 255).abs().mean().item()  # noqa: E731
    assert err(got_left, left) < tol and err(got_right, right) < tol
    assert err(got_left, right) > 2 * tol  # the order is right, not just the sizes


@pytest.mark.parametrize(
    "name,meta,expected",
    [
        ("movie_LRF_Full_SBS.mkv", {}, ("full_sbs", True, "name")),
        ("movie.Half-OU.mkv", {}, ("half_ou", True, "name")),
        ("movie_RL.mkv", {}, ("half_sbs", False, "name")),
        ("movie.mkv", {"stereo_mode": "bottom_top"}, ("full_ou", False, "metadata")),
    ],
)
def test_detect_from_name_and_metadata(name, meta, expected):
    frame = torch.rand(3, 192, 128) if "ou" in expected[0] else torch.rand(3, 96, 128)
    found = detect_layout(name, meta, frame)
    assert (found.name, found.left_first, found.source) == expected


@pytest.mark.parametrize("layout", ["full_sbs", "half_sbs", "full_ou", "half_ou"])
def test_detect_from_content_on_real_pairs(tmp_path: Path, layout):
    film, _, _ = packed_film(tmp_path / "neutral.mkv", layout)
    found = film_layout(film, "auto", read_frames_at(film, [0])[0])
    assert found.name == layout and found.source.startswith("content")


def test_detect_refuses_a_mono_frame():
    mono = np.asarray(Image.open(PAIR / "image_0" / "Teddy.png").convert("RGB"))
    assert detect_layout("movie.mkv", {}, torch.from_numpy(mono).permute(2, 0, 1).float() / 255) is None


def test_detect_from_metadata_written_by_convert(tmp_path: Path):
    film, _, _ = packed_film(tmp_path / "plain.mkv", "full_ou", metadata={"stereo_mode": "top_bottom"})
    assert film_layout(film, "auto", read_frames_at(film, [0])[0]).source == "metadata"


VR = SHARED_DATA / "stereo_video" / "google_vr_samples"


@pytest.mark.skipif(not VR.is_dir(), reason="../shared/data is not beside this checkout")
@pytest.mark.parametrize("clip", ["congo_360_stereo_topbottom.mp4", "iceland0_360_stereo_topbottom.ts", "sphericalv2_vr180_stereo_topbottom.mp4"])
def test_vr_clips_detected_over_under_by_name_and_by_content(clip):
    assert from_name(clip)[:2] == ("ou", True)
    frame = torch.from_numpy(read_frames_at(VR / clip, [30])[0]).permute(2, 0, 1).float() / 255
    assert from_content(frame)[0] == "ou"


def test_vr_centre_crop_aspect():
    eye = torch.rand(3, 540, 1920)  # a squeezed 360 eye: the crop gets its true 90:60 aspect
    assert vr_centre(eye, "equirect360").shape == (3, 180, 270)
    assert vr_centre(torch.rand(3, 752, 1072), "vr180").shape == (3, 376, 376)


def test_films_datamodule_splits_by_film_and_caches(tmp_path: Path):
    root = tmp_path / "films"
    root.mkdir()
    for name in ("a_SBS.mkv", "b_SBS.mkv", "c_SBS.mkv"):
        frames = [
            pack(*(torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255 for x in real_pair()), "full_sbs")[0]
            .mul(255)
            .round()
            .byte()
            .permute(1, 2, 0)
            .numpy()
        ] * 10
        write_video(root / name, frames)
    dm = StereoFilmsDataModule(str(root), every=4, cache_dir=str(tmp_path / "cache"), val_films=1, crop=(64, 96), samples_per_pair=1)
    dm.prepare_data()
    dm.setup()
    val = {n for n, _, _ in dm.val_set.images}
    train = {n for n, _, _ in dm.train_set.images}
    assert val == {"a_SBS_000000", "a_SBS_000004", "a_SBS_000008"}
    assert train == {f"{f}_SBS_{i:06d}" for f in "bc" for i in (0, 4, 8)}
    done = sorted((tmp_path / "cache").glob("*/done"))
    stamps = [p.stat().st_mtime_ns for p in done]
    dm.setup()
    assert [p.stat().st_mtime_ns for p in done] == stamps  # extracted once, then read from the cache


@pytest.mark.slow
def test_train_on_a_folder_of_films(tmp_path: Path):
    import subprocess
    import sys

    root = tmp_path / "films"
    root.mkdir()
    for name in ("a_LRF_Full_SBS.mkv", "b_LRF_Full_SBS.mkv"):
        packed_film(root / name, "full_sbs", frames=5)
    r = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "train.py"),
            "data=films",
            f"data.root={root}",
            "data.every=2",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.crop=[64,96]",
            "trainer.fast_dev_run=true",
            "trainer.enable_progress_bar=false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "a_LRF_Full_SBS.mkv: full_sbs, left eye first (from name)" in next(tmp_path.glob("outputs/train/*/train.log")).read_text()


def sbs_films(root: Path, names=("a_SBS.mkv", "b_SBS.mkv", "c_SBS.mkv"), frames: int = 10) -> None:
    root.mkdir()
    packed = (
        pack(*(torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255 for x in real_pair()), "full_sbs")[0].mul(255).round().byte().permute(1, 2, 0).numpy()
    )
    for name in names:
        write_video(root / name, [packed] * frames)


def test_films_datamodule_honours_exclude_val_names_and_hints(tmp_path: Path):
    root = tmp_path / "films"
    sbs_films(root)
    kw = dict(every=4, cache_dir=str(tmp_path / "cache"), crop=(64, 96), samples_per_pair=1)
    # exclude: a whole film by its stem, or single frames by name; val_names: films (or frames) to validate
    dm = StereoFilmsDataModule(str(root), exclude=("c_SBS", "a_SBS_000004"), val_names=("b_SBS",), hints=(0, 16), **kw)
    dm.setup()
    assert {n for n, _, _ in dm.val_set.images} == {"b_SBS_000000", "b_SBS_000004", "b_SBS_000008"}
    assert {n for n, _, _ in dm.train_set.images} == {"a_SBS_000000", "a_SBS_000008"}
    assert not any(p.name.startswith("c_SBS") for p in (tmp_path / "cache").iterdir())  # excluded: not even extracted
    item = dm.train_set[0]
    assert item["hint_left"].shape == (1, 64, 96) and item["hint_right"].shape == (1, 64, 96)  # hints reach the training set
    # frame names in val_names (a film on both sides is the caller's choice)
    dm = StereoFilmsDataModule(str(root), val_names=("a_SBS_000008",), **kw)
    dm.setup()
    assert {n for n, _, _ in dm.val_set.images} == {"a_SBS_000008"} and len(dm.train_set.images) == 8
    assert "hint_left" not in dm.train_set[0]


def test_read_frames_at_and_frame_at_apply_the_display_rotation(tmp_path: Path):
    from conftest import make_video

    from s3d.io.video import decode_frames, frame_at, probe_video

    video = make_video(tmp_path / "phone.mp4", width=64, height=48, frames=12, rotation=90, audio=False)
    info = probe_video(video)
    upright = [f.rgb for f in decode_frames(info)]
    assert upright[0].shape == (64, 48, 3)
    got = read_frames_at(info, [9, 2, 5])  # any order: seeks back, decodes on ahead
    assert all(np.array_equal(g, upright[i]) for g, i in zip(got, [9, 2, 5]))
    assert np.array_equal(frame_at(info, 5 / 24), upright[5])
    assert np.array_equal(frame_at(info, 100.0), upright[-1])  # past the end: the last frame
    from s3d.errors import S3DError

    with pytest.raises(S3DError, match="frame 40"):
        read_frames_at(info, [40])
