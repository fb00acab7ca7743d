"""The local web page, started the way users start it (``python app.py`` in a subprocess on a free port):
upload -> preview -> convert -> download, each defence of :mod:`s3d.app`, and a real browser (slow)."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import SAMPLE, make_video
from PIL import Image

from s3d.config import PROJECT_ROOT, compose

APP_ARGS = ['convert=["depth=tiny_random","video.preset=ultrafast"]', "max_upload_mb=1", "socket_timeout=2", "max_connections=6"]


class Page:
    """A running ``python app.py``: its printed address, and requests sent as its own page sends them."""

    def __init__(self, workdir: Path, *overrides: str, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "port=0", f"workdir={workdir}", *overrides],
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 120
        for line in self.proc.stdout:  # type: ignore[union-attr]
            found = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+))", line)
            if found:
                self.url, self.port, self.token = found.group(1), int(found.group(2)), found.group(3)
                break
            if time.time() > deadline:
                break
        else:
            raise AssertionError(f"app.py printed no address (exit {self.proc.wait()})")
        self.origin = f"http://127.0.0.1:{self.port}"

    def headers(self, write: bool = False, **extra: str) -> dict[str, str]:
        h = {"Host": f"127.0.0.1:{self.port}", "Cookie": f"s3d_token_{self.port}={self.token}"}
        if write:
            h["Origin"] = self.origin
        h.update(extra)
        return {k: v for k, v in h.items() if v is not None}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers if headers is not None else self.headers(write=method == "POST"))
            r = conn.getresponse()
            return r.status, r.read(), dict(r.headers)
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        status, data, _ = self.request(method, path, body, headers)
        return status, json.loads(data)

    def upload(self, path: Path, name: str | None = None) -> tuple[int, dict]:
        return self.json("POST", f"/upload?name={name or path.name}", path.read_bytes())

    def wait_done(self, job: str) -> dict:
        for _ in range(600):
            status = self.json("GET", f"/status?job={job}")[1]
            if status["state"] in ("done", "error"):
                return status
            time.sleep(0.2)
        raise AssertionError("conversion did not finish")

    def alive(self) -> bool:
        return self.request("GET", "/")[0] == 200

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    p = Page(tmp_path_factory.mktemp("app") / "work", *APP_ARGS)
    yield p
    p.stop()


def raw(page: Page, data: bytes, wait: float = 0.0) -> bytes:
    """Send bytes as they are (framing tests) and read whatever comes back until the server closes."""
    with socket.create_connection(("127.0.0.1", page.port), timeout=30) as s:
        s.sendall(data)
        time.sleep(wait)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_upload_preview_convert_download(page: Page, tmp_path: Path):
    clip = make_video(tmp_path / "holiday.mp4", width=64, height=48, frames=6)
    status, data = page.upload(clip)
    assert status == 200 and len(data["job"]) >= 16
    job = data["job"]
    status, data = page.json("POST", f"/preview?job={job}&layout=anaglyph&divergence=3&convergence=0.4")
    assert status == 200 and len(data["images"]) == 3, data
    png = page.request("GET", "/" + data["images"][0])
    gif = page.request("GET", "/" + data["images"][1])
    assert png[1][:8] == b"\x89PNG\r\n\x1a\n" and gif[1][:6] == b"GIF89a"
    # the depth the converter believes, beside them: grey (near = bright), the frame's size, not flat
    depth = np.asarray(Image.open(io.BytesIO(page.request("GET", "/" + data["images"][2])[1])).convert("RGB")).astype(int)
    assert "preview_depth.png" in data["images"][2] and depth.shape == (48, 64, 3)
    assert (depth[..., 0] == depth[..., 1]).all() and depth.max() - depth.min() > 50
    status, _ = page.json("POST", f"/convert?job={job}&layout=half_sbs&divergence=2&convergence=0.5")
    assert status == 200
    final = page.wait_done(job)
    assert final["state"] == "done" and final["done"] == final["total"] == 6, final
    (name,) = final["downloads"]
    status, video, headers = page.request("GET", f"/file?job={job}&name={name}&download=1")
    assert status == 200 and "holiday_LR_Half_SBS.mkv" in headers["Content-Disposition"]
    out = tmp_path / "downloaded.mkv"
    out.write_bytes(video)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (64, 48) and v.metadata["stereo_mode"] == "left_right"
        assert len(c.streams.audio) == 1
    # everything the job wrote is inside its own folder, which other local users cannot enter
    assert all(p.resolve().is_relative_to(page.workdir.resolve()) for p in page.workdir.rglob("*"))
    assert stat.S_IMODE((page.workdir / job).stat().st_mode) == 0o700
    assert stat.S_IMODE((page.workdir / job / "upload.mp4").stat().st_mode) == 0o600


def test_three_previews_at_once_all_answer(page: Page, tmp_path: Path):
    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=3)
    jobs = [page.upload(clip)[1]["job"] for _ in range(3)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda j: page.json("POST", f"/preview?job={j}&layout=anaglyph")[0], jobs))
    assert answers == [200, 200, 200]


def test_the_printed_address_sets_the_token_cookie(page: Page):
    status, _, headers = page.request("GET", f"/?token={page.token}", headers={"Host": f"127.0.0.1:{page.port}"})
    assert status == 303 and headers["Location"] == "/"
    assert f"s3d_token_{page.port}={page.token}" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    # without it, or with another, nothing is served
    for cookie in (None, f"s3d_token_{page.port}=" + "x" * 32):
        assert page.request("GET", "/", headers={"Host": f"127.0.0.1:{page.port}", **({"Cookie": cookie} if cookie else {})})[0] == 403
    assert page.request("GET", "/?token=wrongwrongwrongwrong", headers={"Host": f"127.0.0.1:{page.port}"})[0] == 403


def test_a_forged_host_is_refused(page: Page, tmp_path: Path):
    """DNS rebinding: a site whose name resolves to 127.0.0.1 sends its own name as Host."""
    for host in (f"evil.example:{page.port}", "evil.example", "127.0.0.1.evil.example"):
        status, data = page.json("GET", "/", headers=page.headers(Host=host))
        assert status == 403 and "is not this computer" in data["error"], host
    clip = make_video(tmp_path / "d.mp4", width=64, height=48, frames=2)
    status, _ = page.json("POST", "/upload?name=d.mp4", clip.read_bytes(), headers=page.headers(write=True, Host="evil.example"))
    assert status == 403
    for host in (f"localhost:{page.port}", f"[::1]:{page.port}"):
        assert page.request("GET", "/", headers=page.headers(Host=host))[0] == 200, host
    assert page.alive()


def test_a_foreign_or_missing_origin_cannot_write(page: Page, tmp_path: Path):
    clip = make_video(tmp_path / "e.mp4", width=64, height=48, frames=2)
    before = set(page.workdir.iterdir())
    for origin in ("http://evil.example", f"http://127.0.0.1:{page.port + 1}", "null", f"https://127.0.0.1:{page.port}", None):
        headers = page.headers(write=True)
        headers.pop("Origin")
        if origin:
            headers["Origin"] = origin
        status, data = page.json("POST", "/upload?name=e.mp4", clip.read_bytes(), headers=headers)
        assert status == 403 and "origin" in data["error"], origin
    assert set(page.workdir.iterdir()) == before
    assert page.alive()


def test_uploads_need_an_exact_length(page: Page):
    host, origin, cookie = f"127.0.0.1:{page.port}", page.origin, f"s3d_token_{page.port}={page.token}"
    head = f"POST /upload?name=a.mp4 HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nCookie: {cookie}\r\n"
    before = set(page.workdir.iterdir())
    chunked = raw(page, (head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").encode())
    assert chunked.startswith(b"HTTP/1.1 411"), chunked[:80]
    unsized = raw(page, (head + "\r\n").encode() + b"hello")
    assert unsized.startswith(b"HTTP/1.1 411"), unsized[:80]
    # a body that ends (the client stops sending) before its announced length: 400 after the socket timeout
    short = raw(page, (head + "Content-Length: 1000\r\n\r\n").encode() + b"x" * 10)
    assert short.startswith(b"HTTP/1.1 400") and b"ended after 10 of the 1000 bytes" in short, short[:200]
    # a body longer than it says would be stored cut off and the rest read as a request
    longer = raw(page, (head + "Content-Length: 10\r\n\r\n").encode() + b"y" * 5000)
    assert longer.startswith(b"HTTP/1.1 400") and b"runs on past its Content-Length" in longer, longer[:200]
    assert set(page.workdir.iterdir()) == before
    assert page.alive()


def test_limits_types_and_isolation(page: Page, tmp_path: Path):
    # refused from the announced length, before a byte of the body is read (so only the headers are sent here)
    big = raw(
        page,
        f"POST /upload?name=big.mp4 HTTP/1.1\r\nHost: 127.0.0.1:{page.port}\r\nOrigin: {page.origin}\r\nCookie: s3d_token_{page.port}={page.token}\r\nContent-Length: {1024 * 1024 + 1}\r\n\r\n".encode(),
    )
    assert big.startswith(b"HTTP/1.1 413") and b"upload limit of 1 MB" in big
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    status, data = page.upload(text)
    assert status == 415 and "not a video or photo" in data["error"]
    clip = make_video(tmp_path / "a.mp4", width=64, height=48, frames=3)
    _, a = page.upload(clip)
    _, b = page.upload(clip, name="../../evil.mp4")
    assert a["job"] != b["job"] and sorted(p.name for p in (page.workdir / b["job"]).iterdir()) == ["upload.mp4"]
    # only files a job produced are served; no path, no other job, no guessing
    for url in (
        f"/file?job={a['job']}&name=upload.mp4",
        f"/file?job={a['job']}&name=../{b['job']}/upload.mp4",
        "/file?job=../../etc&name=passwd",
        f"/file?job={'x' * 32}&name=preview_anaglyph.png",
        "/../conf/app.yaml",
        "/status?job=nope",
    ):
        assert page.request("GET", url)[0] == 404, url
    status, data = page.json("POST", f"/preview?job={a['job']}&layout=cubist")
    assert status == 400 and "unknown layout" in data["error"]
    status, data = page.json("POST", f"/preview?job={a['job']}&divergence=lots")
    assert status == 400 and data["error"] == "divergence must be a number, got 'lots'"


def test_a_decompression_bomb_is_answered(page: Page, tmp_path: Path):
    """A 57-byte PNG declaring 50000 x 50000 pixels: refused with a message, and the server goes on."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))
    _, data = page.upload(bomb)
    status, data = page.json("POST", f"/preview?job={data['job']}")
    assert status == 400 and "decompression bomb" in data["error"], data
    assert page.alive()
    # the command line gives its one line too
    cli = subprocess.run([sys.executable, "convert.py", f"input={bomb}", "depth=tiny_random"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and cli.stderr.strip().count("\n") == 0 and "decompression bomb" in cli.stderr, cli.stderr


def test_stalled_clients_are_dropped_and_connections_bounded(page: Page):
    """max_connections=6, socket_timeout=2: idle sockets beyond 6 get 503 at once; all are dropped by the timeout."""
    idle = [socket.create_connection(("127.0.0.1", page.port), timeout=30) for _ in range(6)]
    time.sleep(0.3)
    try:
        with socket.create_connection(("127.0.0.1", page.port), timeout=30) as extra:
            assert extra.recv(100).startswith(b"HTTP/1.1 503")
        for s in idle:  # each stalled connection is closed by the server after the socket timeout
            s.settimeout(10)
            assert s.recv(100) == b""
    finally:
        for s in idle:
            s.close()
    time.sleep(0.2)
    assert page.alive()


def test_security_headers_and_head(page: Page):
    status, body, headers = page.request("GET", "/")
    assert status == 200 and b'id="file"' in body
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    status, body, headers = page.request("HEAD", "/")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000


def test_idle_jobs_are_deleted_after_the_retention_period(tmp_path: Path):
    from s3d.app import App

    app = App(compose("app", [f"workdir={tmp_path / 'work'}", "retention_hours=1"]))
    clip = make_video(tmp_path / "f.mp4", width=64, height=48, frames=2)
    with clip.open("rb") as body:
        old = app.new_job("f.mp4", clip.stat().st_size, body, lambda: False)
    with clip.open("rb") as body:
        fresh = app.new_job("f.mp4", clip.stat().st_size, body, lambda: False)
    leftover = tmp_path / "work" / ("z" * 32)  # a folder of an earlier run
    leftover.mkdir()
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    app.jobs[old].touched -= 7200
    assert sorted(app.sweep()) == sorted([old, "z" * 32])
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [fresh] and list(app.jobs) == [fresh]
    app.jobs[fresh].state, app.jobs[fresh].touched = "converting", 0
    assert app.sweep() == []  # never under a running conversion


def test_a_bad_convert_override_stops_the_start_with_one_line(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "app.py", "port=0", f"workdir={tmp_path}", "token=short"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and "token= must be at least 16 characters" in proc.stderr


# --- a real browser ------------------------------------------------------------------------------


def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed here when absent (root with apt); else skip."""
    paths = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(paths) and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"], capture_output=True, timeout=900)
        paths = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(paths):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    return paths  # type: ignore[return-value]


@pytest.mark.slow
def test_in_headless_chromium(tmp_path: Path):
    """``python app.py`` with the default model; the browser opens the printed address and converts the sample."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser_path, driver_path = chromium()
    page = Page(tmp_path / "work")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1300", "--disable-background-networking"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(page.url)
        wait = WebDriverWait(driver, 300)
        depth = wait.until(lambda d: d.find_element(By.ID, "depth").text)
        assert depth.startswith("Depth network: ")  # which network makes the 3D, said on the page
        driver.find_element(By.ID, "file").send_keys(str(SAMPLE))
        wait.until(lambda d: d.find_element(By.ID, "preview").is_enabled())
        Select(driver.find_element(By.ID, "layout")).select_by_value("full_sbs")
        driver.find_element(By.ID, "preview").click()
        wait.until(lambda d: d.execute_script("const i = document.getElementById('preview_wiggle'); return i && i.complete && i.naturalWidth > 0"))
        driver.find_element(By.ID, "convert").click()
        link = wait.until(lambda d: d.find_elements(By.CLASS_NAME, "download"))[0]
        link.click()
        wait.until(lambda d: [p for p in downloads.iterdir() if p.suffix == ".mkv"])
        video = next(p for p in downloads.iterdir() if p.suffix == ".mkv")
        assert video.name == "big_buck_bunny_432_433s_720p_LRF_Full_SBS.mkv"
        with av.open(str(video)) as c:
            v = c.streams.video[0]
            assert (v.codec_context.width, v.codec_context.height) == (2560, 720) and v.metadata["stereo_mode"] == "left_right"
            assert [s.codec_context.name for s in c.streams.audio] == ["vorbis"]
    finally:
        driver.quit()
        page.stop()


def test_the_page_names_its_depth_and_fetches_the_better_one_when_asked(tmp_path: Path):
    """``depth=auto`` with the better network missing: the page says so and offers it; asked, it fetches it
    (from a Hub stand-in on 127.0.0.1) and the next conversion uses it."""
    from conftest import serve_hub
    from test_auto_depth import REPO_FILE, _safetensors_bytes
    from test_depth_anything import random_hf_state

    weights = tmp_path / "w" / "depth_anything_v2_small.safetensors"
    with serve_hub({REPO_FILE: _safetensors_bytes(random_hf_state())}) as (endpoint, hub):
        env = {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        page = Page(tmp_path / "work", f'convert=["depth.prefer.weights={weights}"]', env=env)
        try:
            before = page.json("GET", "/depth")[1]
            assert not before["preferred"] and before["line"].startswith("depth: the bundled model (s3d_lite0")
            assert before["better"].startswith("Depth Anything V2 Small (Apache-2.0") and hub.requests == 0  # nothing fetched unasked
            assert page.json("GET", "/depth", headers={"Host": f"127.0.0.1:{page.port}"})[0] == 403  # the token, as for every route
            status, _ = page.json("POST", "/depth/fetch")
            assert status == 200
            for _ in range(300):
                after = page.json("GET", "/depth")[1]
                if after["state"] != "fetching":
                    break
                time.sleep(0.2)
            assert after["state"] == "done" and after["preferred"] and after["better"] is None, after
            assert after["line"] == "depth: Depth Anything V2 Small (depth_anything_v2_small, Apache-2.0)" and hub.gets == 1
            clip = make_video(tmp_path / "clip.mp4", frames=3)
            job = page.upload(clip)[1]["job"]
            assert page.json("POST", f"/convert?job={job}&layout=half_sbs&divergence=2&convergence=0.5")[0] == 200
            assert page.wait_done(job)["state"] == "done"
        finally:
            page.stop()
