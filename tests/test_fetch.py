"""``make weights`` against a local HTTP server on 127.0.0.1 serving the fixture (no test touches the network)."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import exit_code, serve_files
from keras_densedepth import make_layers, write_h5

from s3d.depth.fetch_densedepth import main


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    write_h5(root / "nyu.h5", make_layers())
    body = (root / "nyu.h5").read_bytes()

    routes = {"/nyu.h5": body, "/short.h5": (body[: len(body) // 2], len(body)), "/page.h5": b"<html>moved</html>"}
    with serve_files(routes) as base:
        yield base, hashlib.sha256(body).hexdigest()


def test_fetch_downloads_checks_records_sha_and_converts(server, tmp_path):
    base, sha = server
    out = tmp_path / "w" / "dd.safetensors"
    assert main(["--url", f"{base}/nyu.h5", "--out", str(out), "--any-size", "--quiet"]) == 0
    assert out.exists() and out.with_suffix(".h5").exists()
    assert json.loads(out.with_suffix(".json").read_text())["source_sha256"] == sha


def test_fetch_refuses_a_model_that_is_not_densenet169(server, tmp_path, capsys):
    base, _ = server
    out = tmp_path / "dd.safetensors"
    assert exit_code(main, ["--url", f"{base}/nyu.h5", "--out", str(out), "--quiet"]) == 1
    assert "not the DenseNet-169 DenseDepth" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("path,problem", [("short.h5", "incomplete|failed"), ("missing.h5", "HTTP 404"), ("page.h5", "not an HDF5 file")])
def test_failed_download_leaves_nothing_that_looks_complete(server, tmp_path, capsys, path, problem):
    base, _ = server
    out = tmp_path / "dd.safetensors"
    assert exit_code(main, ["--url", f"{base}/{path}", "--out", str(out), "--any-size", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and __import__("re").search(problem, err)
    assert not out.exists() and not out.with_suffix(".h5").exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
