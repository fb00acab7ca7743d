"""``depth=auto``, the default, as a user starts it (``convert.py`` in a subprocess) against a Hub stand-in on
127.0.0.1 serving random weights in the published ``depth-anything/Depth-Anything-V2-Small-hf`` layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import closed_port, make_video, serve_hub
from test_depth_anything import random_hf_state

from s3d.config import PROJECT_ROOT

REPO_FILE = "depth-anything/Depth-Anything-V2-Small-hf/model.safetensors"
FALLBACK = "depth: the bundled model (s3d_lite0"


def _safetensors_bytes(state) -> bytes:
    from safetensors.torch import save

    return save(state)


@pytest.fixture(scope="module")
def published() -> bytes:
    """Random weights in the published file's layout (every name and shape)."""
    return _safetensors_bytes(random_hf_state())


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_video(tmp_path / "clip.mp4", frames=3, audio=True)


def run_convert(clip: Path, tmp_path: Path, endpoint: str | None, *args: str, offline: bool = False, out: str = "out.mkv") -> subprocess.CompletedProcess:
    """``python convert.py input=clip`` with an empty Hub cache and weights folder of this test's own."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    cmd = [
        sys.executable,
        str(PROJECT_ROOT / "convert.py"),
        f"input={clip}",
        f"output={tmp_path / out}",
        "overwrite=true",
        *args,
    ]
    if not any(a.startswith("depth=") for a in args):  # the default, depth=auto, with this test's own weights folder
        cmd.append(f"depth.prefer.weights={tmp_path / 'w' / 'depth_anything_v2_small.safetensors'}")
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)


def depth_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if "depth: " in line and "fetching" not in line]


def hub_blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and "blobs" in p.parts]


def test_first_run_fetches_once_and_names_the_network_the_second_fetches_nothing(published, clip, tmp_path):
    with serve_hub({REPO_FILE: published}) as (endpoint, hub):
        first = run_convert(clip, tmp_path, endpoint)
        assert first.returncode == 0, first.stderr
        assert depth_lines(first) == ["INFO depth: Depth Anything V2 Small (depth_anything_v2_small, Apache-2.0)"]
        assert hub.gets == 1
        asked = hub.requests
        weights = tmp_path / "w" / "depth_anything_v2_small.safetensors"
        meta = json.loads(weights.with_suffix(".json").read_text())
        assert meta["source_sha256"] == __import__("hashlib").sha256(published).hexdigest()
        second = run_convert(clip, tmp_path, endpoint, out="out2.mkv")
        assert second.returncode == 0, second.stderr
        assert depth_lines(second) == depth_lines(first)
        assert hub.requests == asked  # the converted file is used as it is: no request at all
    assert (tmp_path / "out.mkv").stat().st_size > 0 and (tmp_path / "out2.mkv").stat().st_size > 0


def test_unreachable_hub_falls_back_in_seconds_with_one_line(clip, tmp_path):
    start = time.monotonic()
    r = run_convert(clip, tmp_path, closed_port())
    assert r.returncode == 0, r.stderr
    (line,) = depth_lines(r)
    assert line.startswith(f"INFO {FALLBACK}") and "cannot connect" in line and "make weights depth=depth_anything_v2_small" in line
    assert (tmp_path / "out.mkv").stat().st_size > 0
    assert time.monotonic() - start < 60


def test_a_hub_that_never_answers_costs_seconds(clip, tmp_path):
    with serve_hub({}, hang=True) as (endpoint, _):
        start = time.monotonic()
        r = run_convert(clip, tmp_path, endpoint)
        took = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    (line,) = depth_lines(r)
    assert FALLBACK in line and "no answer within 5 s" in line
    assert took < 60


@pytest.mark.parametrize("kind", ["damaged", "foreign"])
def test_a_damaged_or_foreign_file_is_refused_not_kept_and_the_bundled_model_converts(published, clip, tmp_path, kind):
    import torch

    body = published if kind == "damaged" else _safetensors_bytes({"some.other.network": torch.zeros(3)})
    with serve_hub({REPO_FILE: body}, damage=kind == "damaged") as (endpoint, hub):
        r = run_convert(clip, tmp_path, endpoint)
        assert hub.gets >= 1
    assert r.returncode == 0, r.stderr
    (line,) = depth_lines(r)
    assert FALLBACK in line and ("damaged download" if kind == "damaged" else "not Depth Anything V2 Small") in line
    assert hub_blobs(tmp_path) == []  # not kept in the Hub cache: the next run fetches afresh
    assert not (tmp_path / "w" / "depth_anything_v2_small.safetensors").exists()
    assert (tmp_path / "out.mkv").stat().st_size > 0


def test_offline_and_an_explicit_depth_never_touch_the_network(published, clip, tmp_path):
    with serve_hub({REPO_FILE: published}) as (endpoint, hub):
        offline = run_convert(clip, tmp_path, endpoint, offline=True)
        explicit = run_convert(clip, tmp_path, endpoint, "depth=s3d_lite0", out="out2.mkv")
        assert hub.requests == 0
    assert offline.returncode == 0 and explicit.returncode == 0, offline.stderr + explicit.stderr
    (line,) = depth_lines(offline)
    assert FALLBACK in line and "HF_HUB_OFFLINE" in line
    assert depth_lines(explicit) == ["INFO depth: the bundled model (s3d_lite0, licences in weights/MODEL_CARD.md)"]


def test_a_damaged_converted_file_is_fetched_again(published, clip, tmp_path):
    with serve_hub({REPO_FILE: published}) as (endpoint, hub):
        assert run_convert(clip, tmp_path, endpoint).returncode == 0
        weights = tmp_path / "w" / "depth_anything_v2_small.safetensors"
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF  # one flipped byte inside a tensor: the header still reads
        weights.write_bytes(bytes(data))
        r = run_convert(clip, tmp_path, endpoint, out="out2.mkv")
        assert r.returncode == 0, r.stderr
        assert depth_lines(r) == ["INFO depth: Depth Anything V2 Small (depth_anything_v2_small, Apache-2.0)"]
    assert json.loads(weights.with_suffix(".json").read_text())["sha256"] == __import__("hashlib").sha256(weights.read_bytes()).hexdigest()


def test_make_weights_takes_the_same_path(published, tmp_path):
    out = tmp_path / "w" / "da.safetensors"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    with serve_hub({REPO_FILE: published}) as (endpoint, hub):
        r = subprocess.run(
            [sys.executable, "-m", "s3d.depth.fetch_depth_anything", "--out", str(out), "--quiet"],
            env={**env, "HF_ENDPOINT": endpoint},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert hub.gets == 1
    assert out.exists() and "Depth Anything V2 Small" in r.stdout
    assert len(hub_blobs(tmp_path)) == 1  # the Hub cache keeps the published file (shared with other tools)


def test_why_the_fall_back_was_taken_does_not_stop_a_resume():
    """The segments of an interrupted run are kept by a fingerprint of the settings that change the pictures: the
    fall-back's reason (offline today, unreachable yesterday) is not one of them, the network chosen is."""
    from omegaconf import OmegaConf

    from s3d.config import compose
    from s3d.convert import picture_settings
    from s3d.depth.auto import resolve_depth

    cfg = compose("convert", ["input=x.mp4", "depth.prefer.weights=/nonexistent/da.safetensors"])
    resolve_depth(cfg, fetch=False)
    assert cfg.depth.name == "s3d_lite0" and "not fetched yet" in cfg.depth.note
    other = OmegaConf.create(OmegaConf.to_container(cfg))
    other.depth.note = "another reason"
    assert picture_settings(cfg) == picture_settings(other)
    other.depth.resolution = 128
    assert picture_settings(cfg) != picture_settings(other)
