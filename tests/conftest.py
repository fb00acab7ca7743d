"""Fixtures: small real-format media made on the fly with PyAV and Pillow (nothing is downloaded)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: no test reaches the Hub (the stand-in below is asked explicitly)

import contextlib
import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import settings

from s3d.config import PROJECT_ROOT

# Property tests: no per-example deadline (the first example pays for imports and warm-up on a busy CI machine).
settings.register_profile("s3d", deadline=None, max_examples=100)
settings.load_profile("s3d")

SAMPLE = PROJECT_ROOT / "samples" / "big_buck_bunny_432_433s_720p.webm"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def textured_frame(h: int, w: int, i: int = 0) -> np.ndarray:
    """A frame with texture at every scale, moving with ``i``: ``(H, W, 3) uint8``."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 120 * np.sin((x + 3 * i) / 7.0)
    g = 127 + 120 * np.cos((y - 2 * i) / 5.0)
    b = (x * 3 + y * 5 + i * 11) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def make_video(
    path: Path,
    width: int = 64,
    height: int = 48,
    frames: int = 6,
    fps: int = 24,
    audio: bool = True,
    pts: list[int] | None = None,
    rotation: int = 0,
    subtitle: bool = False,
    video: bool = True,
    pix_fmt: str = "yuv420p",
    audio_seconds: float | None = None,
) -> Path:
    """Write a small H.264 (+ AAC) file; ``pts`` in 1/1000 s gives a variable frame rate; the audio lasts
    as long as the video unless ``audio_seconds`` says otherwise."""
    fmt = "matroska" if path.suffix == ".mkv" else None
    with av.open(str(path), "w", format=fmt) as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
            if pts is not None:
                vs.time_base = Fraction(1, 1000)
                vs.codec_context.time_base = Fraction(1, 1000)
            if rotation:
                vs.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=48000, layout="stereo")
        n_samples = int(48000 * (audio_seconds if audio_seconds is not None else frames / fps))
        if vs is not None:
            for i in range(frames):
                f = av.VideoFrame.from_ndarray(textured_frame(height, width, i), format="rgb24")
                f.pts = pts[i] if pts is not None else i
                for p in vs.encode(f):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        if a is not None:
            t = np.arange(n_samples) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            samples = np.stack([tone, tone])
            for start in range(0, n_samples, 1024):
                chunk = samples[:, start : start + 1024]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
                af.sample_rate = 48000
                af.pts = start
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


@pytest.fixture
def tiny_video(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mp4")


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE


def exit_code(main, argv) -> int:
    """What a command-line ``main`` exits with (``SystemExit`` or its return value)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


@contextlib.contextmanager
def serve_files(routes: dict[str, bytes | tuple[bytes, int]], content_type: str = "application/octet-stream") -> Iterator[str]:
    """A local HTTP server on 127.0.0.1 (no test touches the network): ``path -> body`` or ``path -> (body,
    announced length)`` (a shorter body than announced is a connection that drops half way); other paths 404.
    Yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            route = routes.get(self.path) or routes.get(self.path.rstrip("/"))
            if route is None:
                self.send_error(404)
                return
            body, length = route if isinstance(route, tuple) else (route, len(route))
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if body.lstrip().startswith(b"<html") else content_type)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


class HubStandIn:
    """A local server on 127.0.0.1 that answers like the Hugging Face Hub for ``/{repo}/resolve/{revision}/{file}``:
    HEAD and GET with ``X-Repo-Commit``, ``ETag`` (the sha256 of the real content, as the Hub names git-LFS
    files), ``Content-Length`` and byte ranges. ``damage`` serves other bytes than the ETag names; ``hang``
    accepts connections and never answers. ``gets`` counts the GET requests of the content."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, files: dict[str, bytes], damage: bool = False, hang: bool = False):
        self.files, self.damage, self.hang, self.gets, self.requests = files, damage, hang, 0, 0

    def _route(self, path: str) -> bytes | None:
        parts = path.split("?")[0].lstrip("/").split("/")  # owner / repo / resolve / revision / file...
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        return self.files.get("/".join([parts[0], parts[1], *parts[4:]]))

    def handler(self):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _head(self) -> bytes | None:
                hub.requests += 1
                if hub.hang:
                    time.sleep(60)
                    return None
                body = hub._route(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Repo-Commit", hub.COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                sent = body if not hub.damage else body[:-1] + bytes([body[-1] ^ 0xFF])
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0] or 0)
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", hub.COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(sent) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(sent) - 1}/{len(sent)}")
                self.end_headers()
                return sent[start:]

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                body = self._head()
                if body is not None:
                    hub.gets += 1
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


@contextlib.contextmanager
def serve_hub(files: dict[str, bytes], damage: bool = False, hang: bool = False) -> Iterator[tuple[str, HubStandIn]]:
    """:class:`HubStandIn` serving ``files`` (``"owner/repo/filename" -> bytes``); yields ``(HF_ENDPOINT, the stand-in)``."""
    hub = HubStandIn(files, damage, hang)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hub
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port() -> str:
    """An address on 127.0.0.1 where nothing listens: an unreachable Hub."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
