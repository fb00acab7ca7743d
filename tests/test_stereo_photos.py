"""Stereo photos people have: Apple spatial photos (HEIF), side-by-side and over-under JPEG/PNG by name, MPO."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from s3d.config import compose
from s3d.convert import convert
from s3d.errors import S3DError
from s3d.layout.detect import from_name

ROOT = Path(__file__).resolve().parents[1]
HEIC = SHARED_DATA / "stereo_photos" / "vision-pro.HEIC"


def _eyes(h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(5)
    left = g.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return left, np.roll(left, -4, axis=1)  # the right eye: the scene 4 px to the left


def _run(tmp_path: Path, src: Path, *overrides: str) -> np.ndarray:
    out = tmp_path / f"out_{len(list(tmp_path.iterdir()))}.png"
    convert(compose("convert", [f"input={src}", f"output={out}", "depth=tiny_random", "quiet=true", "photo.gif=false", *overrides]))
    return np.array(Image.open(out).convert("RGB"))


def test_names_that_say_stereo():
    assert from_name("calf-left-right") == ("sbs", True, None)
    assert from_name("stereograph.left-right") == ("sbs", True, None)
    assert from_name("card.right-left") == ("sbs", False, None)
    assert from_name("street_top-bottom_half") == ("ou", True, True)
    assert from_name("holiday") is None


def test_a_side_by_side_photo_is_repacked_from_its_real_eyes(tmp_path):
    left, right = _eyes()
    src = tmp_path / "scene-left-right.png"
    Image.fromarray(np.concatenate((left, right), axis=1)).save(src)
    ou = _run(tmp_path, src, "layout=full_ou")
    assert ou.shape == (96, 64, 3) and np.array_equal(ou[:48], left) and np.array_equal(ou[48:], right)
    crossed = tmp_path / "card.right-left.png"  # a cross-view card: the right eye first
    Image.fromarray(np.concatenate((right, left), axis=1)).save(crossed)
    assert np.array_equal(_run(tmp_path, crossed, "layout=full_sbs"), np.concatenate((left, right), axis=1))
    assert np.array_equal(_run(tmp_path, src, "layout=full_cross"), np.concatenate((right, left), axis=1))


def test_a_2d_photo_to_cross_eyed_keeps_the_input_eye_on_the_right(tmp_path):
    left, _ = _eyes()
    src = tmp_path / "flat.png"
    Image.fromarray(left).save(src)
    cross = _run(tmp_path, src, "layout=full_cross")
    assert cross.shape == (48, 128, 3) and np.array_equal(cross[:, 64:], left) and not np.array_equal(cross[:, :64], left)
    sbs = _run(tmp_path, src, "layout=full_sbs")
    assert np.array_equal(cross[:, :64], sbs[:, 64:])  # the same synthesised right eye, on the other side


def test_a_stereo_photo_can_drive_a_2d_conversion_from_either_eye(tmp_path):
    left, right = _eyes()
    src = tmp_path / "scene_LR.png"
    Image.fromarray(np.concatenate((left, right), axis=1)).save(src)
    from_right = _run(tmp_path, src, "photo.from_stereo=convert", "eye=right")
    assert from_right.shape == (48, 128, 3) and np.array_equal(from_right[:, 64:], right)  # the input eye is kept as it is
    assert not np.array_equal(from_right[:, :64], left)  # the other eye is synthesised, not the real one
    mono = _run(tmp_path, src, "photo.stereo=mono")  # the whole picture as one 2D photo
    assert mono.shape == (48, 256, 3) and np.array_equal(mono[:, :128], np.concatenate((left, right), axis=1))


@pytest.mark.skipif(not HEIC.exists(), reason="needs ../shared/data/stereo_photos/vision-pro.HEIC")
def test_apple_spatial_photo_from_the_command_line(tmp_path):
    import pillow_heif

    heif = pillow_heif.open_heif(str(HEIC))
    eyes = [np.asarray(heif[i].to_pillow().convert("RGB")) for i in (0, 1)]  # the stereo group lists image 0 first
    out = tmp_path / "spatial.jpg"
    run = subprocess.run([sys.executable, "convert.py", f"input={HEIC}", f"output={out}", "photo.gif=false"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    sbs = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert sbs.shape == (2560, 5120, 3)
    own = [np.abs(sbs[:, i * 2560 : (i + 1) * 2560] - eyes[i]).mean() for i in (0, 1)]
    swapped = [np.abs(sbs[:, i * 2560 : (i + 1) * 2560] - eyes[1 - i]).mean() for i in (0, 1)]
    assert max(own) < 3 and min(swapped) > max(own)  # each half is its own eye (JPEG-close), not the other


def test_heif_without_pillow_heif_is_one_line(tmp_path, monkeypatch):
    import s3d.io.image as image

    monkeypatch.setattr(image, "HEIF", False)
    src = tmp_path / "x.heic"
    src.write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(S3DError, match="needs pillow-heif: pip install pillow-heif"):
        image.read_photo(src)
