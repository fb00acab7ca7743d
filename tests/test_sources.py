"""Training views from real stereo sources, on small synthetic inputs: counts, sizes, eye order, the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, exit_code
from PIL import Image

from s3d.data.pairs import find_pairs
from s3d.data.sources import (
    VR180_YAWS,
    Unrectified,
    align_pair,
    build_sources,
    build_training_views,
    clean_stem,
    equirect_photo_views,
    main,
    measure_parallax,
    parse_meshes,
    spherical,
    stereo_photo_views,
    view_size,
    vr_video_views,
)

torch.set_num_threads(1)
RED, BLUE = (200, 40, 40), (40, 40, 200)


def eye(h: int, w: int, colour, seed: int = 0) -> np.ndarray:
    """A flat colour with a little noise (no texture to match: the rectification check abstains)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.array(colour, np.float32) + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random texture (blobs a few px wide) that block matching can follow."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 4 + 2, w // 4 + 2, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w + 8, h + 8), Image.BICUBIC))[:h, :w]


def pngs(folder: Path) -> list[str]:
    return sorted(p.stem for p in (folder / "image_0").glob("*.png"))


def colour(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).mean(0)


def is_red(path: Path) -> bool:
    c = colour(path)
    return c[0] > 150 and c[2] < 90


def is_blue(path: Path) -> bool:
    c = colour(path)
    return c[2] > 150 and c[0] < 90


def write_ou_video(path: Path, frames: int = 12, eye_hw=(32, 64)) -> Path:
    """Over-under: left eye red on top, right eye blue below; H.264 with a keyframe every 4 frames."""
    h, w = eye_hw
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, 2 * h, "yuv420p"
        s.codec_context.gop_size = 4
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.concatenate([eye(h, w, RED, i), eye(h, w, BLUE, i)]), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------------


def test_equirect_photo_views_counts_sizes_eyes_and_cache(tmp_path: Path):
    src = tmp_path / "hall.jpg"
    Image.fromarray(np.concatenate([eye(64, 128, RED), eye(64, 128, BLUE)])).save(src, quality=95)
    out = tmp_path / "views"
    folder = equirect_photo_views(src, out, yaws=(0, 90, 180, 270), size=(48, 64))
    assert folder == out
    assert pngs(out) == ["hall_y+000.0", "hall_y+090.0", "hall_y+180.0", "hall_y+270.0"]
    for name, left, right in find_pairs(out):
        assert Image.open(left).size == Image.open(right).size == (64, 48)
        assert is_red(left) and is_blue(right), name  # left = top half

    before = mtimes(out)
    equirect_photo_views(src, out, yaws=(0, 90, 180, 270), size=(48, 64))
    assert mtimes(out) == before  # cached: nothing rewritten

    equirect_photo_views(src, out, yaws=(0, 120, 240), size=(48, 64))  # other settings: redone, old views gone
    assert pngs(out) == ["hall_y+000.0", "hall_y+120.0", "hall_y+240.0"]
    done = json.loads((out / "done").read_text())
    assert done["settings"]["yaws"] == [0, 120, 240] and len(done["sha256"][0]) == 64

    Image.fromarray(np.concatenate([eye(64, 128, RED, 1), eye(64, 128, BLUE, 1)])).save(src, quality=95)  # new content
    stamp = (out / "done").stat().st_mtime_ns
    equirect_photo_views(src, out, yaws=(0, 120, 240), size=(48, 64))
    assert (out / "done").stat().st_mtime_ns != stamp


def test_equirect_photo_views_from_two_files_and_auto_size(tmp_path: Path):
    left, right = tmp_path / "whale-left.png", tmp_path / "whale-right.png"
    Image.fromarray(eye(180, 360, RED)).save(left)
    Image.fromarray(eye(180, 360, BLUE)).save(right)
    out = equirect_photo_views((left, right), tmp_path / "v", yaws=(0, 180))
    assert pngs(out) == ["whale_y+000.0", "whale_y+180.0"]
    _, l, r = find_pairs(out)[0]
    assert Image.open(l).size == (344, 256)  # 1 px/deg: as small as the teacher allows (>= 256 high)
    assert is_red(l) and is_blue(r)


def test_vr_video_views_360_every_nth_frame_staggered_yaws(tmp_path: Path):
    video = write_ou_video(tmp_path / "tiny_360_topbottom.mp4", frames=12)
    out = vr_video_views(video, tmp_path / "v", every=5, yaws=(0, 180), size=(32, 48))
    # frames 0, 5, 10; every other frame turned by half the yaw step
    assert pngs(out) == [
        "tiny_360_topbottom_f000000_y+000.0",
        "tiny_360_topbottom_f000000_y+180.0",
        "tiny_360_topbottom_f000005_y+090.0",
        "tiny_360_topbottom_f000005_y+270.0",
        "tiny_360_topbottom_f000010_y+000.0",
        "tiny_360_topbottom_f000010_y+180.0",
    ]
    for _, left, right in find_pairs(out):
        assert Image.open(left).size == (48, 32)
        assert is_red(left) and is_blue(right)
    done = json.loads((out / "done").read_text())
    assert done["layout"] == "ou" and done["left_first"] and done["projection_from"] == "name"
    before = mtimes(out)
    vr_video_views(video, tmp_path / "v", every=5, yaws=(0, 180), size=(32, 48))
    assert mtimes(out) == before
    vr_video_views(video, tmp_path / "v", every=4, yaws=(0, 180), size=(32, 48))
    assert len(pngs(out)) == 6 and pngs(out)[2].startswith("tiny_360_topbottom_f000004")


def test_vr_video_views_vr180_defaults_to_yaws_around_the_centre(tmp_path: Path):
    video = write_ou_video(tmp_path / "tiny_vr180_topbottom.mp4", frames=6)
    out = vr_video_views(video, tmp_path / "v", every=3, size=(32, 48))
    names = pngs(out)
    assert len(names) == 2 * len(VR180_YAWS)
    assert {n for n in names if "f000000" in n} == {f"tiny_vr180_topbottom_f000000_y{t}" for t in ("-015.0", "+000.0", "+015.0")}
    assert all(is_red(left) and is_blue(right) for _, left, right in find_pairs(out))
    with pytest.raises(ValueError, match="look past"):
        vr_video_views(video, tmp_path / "w", every=3, yaws=(80,), size=(32, 48))


def test_stereo_photo_views_sbs_and_mpo(tmp_path: Path):
    sbs = tmp_path / "calf-left-right.jpg"
    Image.fromarray(np.concatenate([eye(60, 80, RED), eye(60, 80, BLUE)], axis=1)).save(sbs, quality=95)
    out = stereo_photo_views(sbs, tmp_path / "sbs", width=64)
    ((name, left, right),) = find_pairs(out)
    assert name == "calf" and Image.open(left).size == (64, 48)
    assert is_red(left) and is_blue(right)

    mpo = tmp_path / "cam.mpo"
    Image.fromarray(eye(48, 64, RED)).save(mpo, format="MPO", save_all=True, append_images=[Image.fromarray(eye(48, 64, BLUE))])
    ((name, left, right),) = find_pairs(stereo_photo_views(mpo, tmp_path / "mpo", width=32))
    assert name == "cam" and Image.open(left).size == (32, 24) and is_red(left) and is_blue(right)


def test_measure_parallax_and_align_pair():
    base = textured(160, 400, seed=3)
    left, right = base[20:140, 30:350], base[17:137, 36:356]  # right eye: 6 px left (d = +6), 3 px down
    p = measure_parallax(left, right, max_dx=16, max_dy=6)
    assert p.matches >= 30 and p.disparity[1] == pytest.approx(6, abs=0.5) and p.dy == pytest.approx(3, abs=0.5)
    assert p.rectified() is False  # a vertical offset
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255  # noqa: E731
    negative = measure_parallax(base[20:140, 40:360], base[20:140, 30:350], max_dx=16, max_dy=6)  # d = -10
    l2, r2, shift = align_pair(t(base[20:140, 40:360]), t(base[20:140, 30:350]), negative)
    assert shift == (12, 0)
    after = measure_parallax(l2, r2, max_dx=16, max_dy=6)
    assert after.disparity[1] == pytest.approx(2, abs=0.5) and after.rectified()


def test_a_photo_with_vertical_parallax_is_refused(tmp_path: Path):
    base = textured(200, 400, seed=5)
    left = base[20:180, 20:340]
    # the right eye sheared vertically: rows shift by up to +-12 px across the frame
    right = np.stack([base[20 + int(round(12 * (x - 160) / 160)) : 180 + int(round(12 * (x - 160) / 160)), 24 + x] for x in range(320)], axis=1)
    src = tmp_path / "sheared.left-right.png"
    Image.fromarray(np.concatenate([left, right], axis=1)).save(src)
    with pytest.raises(Unrectified, match="not rectified"):
        stereo_photo_views(src, tmp_path / "out", width=320)
    assert not (tmp_path / "out" / "done").exists()
    assert (stereo_photo_views(src, tmp_path / "forced", width=320, check=False, align=False) / "done").exists()


def test_view_size_and_names():
    assert view_size(11.4, 90, "perspective") == (384, 512)  # capped at 512 wide
    assert view_size(3.0, 90, "cylindrical") == (256, 344)  # at least 256 high
    assert clean_stem(Path("GOPR0.left-right.jpg")) == "GOPR0" and clean_stem(Path("calf-left-right.jpg")) == "calf"


def test_build_training_views_and_the_command(tmp_path: Path, capsys):
    shared = tmp_path / "shared"
    (shared / "stereo_360_photos").mkdir(parents=True)
    Image.fromarray(np.concatenate([eye(90, 180, RED), eye(90, 180, BLUE)])).save(shared / "stereo_360_photos" / "hall.jpg")
    (shared / "stereo_video" / "a").mkdir(parents=True)
    (shared / "stereo_video" / "b").mkdir(parents=True)
    write_ou_video(shared / "stereo_video" / "a" / "clip_360_topbottom.mp4", frames=8, eye_hw=(32, 64))
    shutil.copy(shared / "stereo_video" / "a" / "clip_360_topbottom.mp4", shared / "stereo_video" / "b" / "copy_360_topbottom.mp4")
    (shared / "stereo_photos").mkdir()
    for name in ("tiny.left-right.jpg", "GOPR0.left-right.jpg"):
        Image.fromarray(np.concatenate([eye(200, 160, RED), eye(200, 160, BLUE)], axis=1)).save(shared / "stereo_photos" / name)
    (shared / "stereo_photos" / "vision-pro.HEIC").write_bytes(b"\0" * 64)
    out = tmp_path / "out"

    results = {r.name: r for r in build_sources(shared, out, every=4, yaws=(0, 180))}
    assert results["stereo_360_photos/hall.jpg"].views == 2
    assert results["stereo_video/a/clip_360_topbottom.mp4"].views == 4  # frames 0 and 4, two yaws
    assert "same video stream" in results["stereo_video/b/copy_360_topbottom.mp4"].note
    assert results["stereo_photos/tiny.left-right.jpg"].views == 1
    assert results["stereo_photos/GOPR0.left-right.jpg"].folder is None and "not rectified" in results["stereo_photos/GOPR0.left-right.jpg"].note
    assert results["stereo_photos/vision-pro.HEIC"].folder is None
    folders = build_training_views(shared, out, every=4, yaws=(0, 180))
    assert sorted(str(f.relative_to(out)) for f in folders) == ["stereo_360_photos/hall", "stereo_photos/tiny", "vr_video/clip_360_topbottom"]
    pairs = [p for f in folders for p in find_pairs(f)]
    assert len(pairs) == 7 and all(Image.open(left).height >= 256 for _, left, _ in pairs)

    assert exit_code(main, [str(out), "--shared", str(shared), "--every", "4", "--yaw-step", "180"]) == 0
    printed = capsys.readouterr().out
    assert "cached    2 pairs" in printed and "total: 7 pairs from 3 sources" in printed


MESH_CLIP = SHARED_DATA / "stereo_video" / "google_vr_samples" / "sphericalv2_vr180_stereo_topbottom.mp4"


@pytest.mark.skipif(not MESH_CLIP.exists(), reason="../shared/data is not beside this checkout")
def test_the_vr180_clip_carries_one_mesh_per_eye():
    sph = spherical(MESH_CLIP)
    assert sph.kind == "mesh" and sph.source == "mshp" and len(sph.meshes) == 2
    left, right = sph.meshes
    assert left.shape == (2, 40, 40) and not torch.equal(left, right)  # each eye's own calibration
    assert -75 < float(left[0].min()) < -55 and 55 < float(left[0].max()) < 75  # about 130 degrees wide
    assert float(left[1, 0].mean()) > 30 > -30 > float(left[1, -1].mean())  # row 0 at the top
    with pytest.raises(ValueError):
        parse_meshes(b"\0" * 8)
