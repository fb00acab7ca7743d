"""The local web page: the HTTP API as the page calls it, its limits, and a real browser (slow)."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import pytest

from conftest import SAMPLE, make_video
from s3d.app import make_server
from s3d.config import compose


@pytest.fixture
def server(tmp_path: Path):
    cfg = compose("app", ["port=0", f"workdir={tmp_path / 'work'}", "max_upload_mb=1", "convert=[\"depth=tiny_random\",\"video.preset=ultrafast\"]"])
    srv = make_server(cfg)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", tmp_path / "work"
    srv.shutdown()
    srv.server_close()


def request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def upload(base: str, path: Path, name: str | None = None) -> tuple[int, dict]:
    status, body, _ = request("POST", f"{base}/upload?name={name or path.name}", path.read_bytes())
    return status, json.loads(body)


def wait_done(base: str, job: str) -> dict:
    for _ in range(600):
        status = json.loads(request("GET", f"{base}/status?job={job}")[1])
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.2)
    raise AssertionError("conversion did not finish")


def test_upload_preview_convert_download(server, tmp_path: Path):
    base, work = server
    clip = make_video(tmp_path / "holiday.mp4", width=64, height=48, frames=6)
    status, data = upload(base, clip)
    assert status == 200 and len(data["job"]) >= 16
    job = data["job"]
    status, body, _ = request("POST", f"{base}/preview?job={job}&layout=anaglyph&divergence=3&convergence=0.4")
    images = json.loads(body)["images"]
    assert status == 200 and len(images) == 2
    png = request("GET", f"{base}/{images[0]}")
    gif = request("GET", f"{base}/{images[1]}")
    assert png[1][:8] == b"\x89PNG\r\n\x1a\n" and gif[1][:6] == b"GIF89a"
    status, _, _ = request("POST", f"{base}/convert?job={job}&layout=half_sbs&divergence=2&convergence=0.5")
    assert status == 200
    final = wait_done(base, job)
    assert final["state"] == "done" and final["done"] == final["total"] == 6, final
    (name,) = final["downloads"]
    status, video, headers = request("GET", f"{base}/file?job={job}&name={name}&download=1")
    assert status == 200 and "holiday_LR_Half_SBS.mkv" in headers["Content-Disposition"]
    out = tmp_path / "downloaded.mkv"
    out.write_bytes(video)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (64, 48) and v.metadata["stereo_mode"] == "left_right"
        assert len(c.streams.audio) == 1
    # everything the job wrote is inside its own folder under the work folder
    assert all(p.resolve().is_relative_to(work.resolve()) for p in work.rglob("*"))


def test_limits_types_and_isolation(server, tmp_path: Path):
    base, work = server
    # refused from the announced length, before a byte of the body is read (so only the headers are sent here)
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=60)
    conn.putrequest("POST", "/upload?name=big.mp4")
    conn.putheader("Content-Length", str(1024 * 1024 + 1))
    conn.endheaders()
    response = conn.getresponse()
    status, data = response.status, json.loads(response.read())
    conn.close()
    assert status == 413 and "upload limit of 1 MB" in data["error"]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    status, data = upload(base, text)
    assert status == 415 and "not a video or photo" in data["error"]
    assert not any(work.iterdir())  # nothing kept of refused uploads
    clip = make_video(tmp_path / "a.mp4", width=64, height=48, frames=3)
    _, a = upload(base, clip)
    _, b = upload(base, clip, name="../../evil.mp4")
    assert a["job"] != b["job"] and sorted(p.name for p in (work / b["job"]).iterdir()) == ["upload.mp4"]
    # only files a job produced are served; no path, no other job, no guessing
    for url in (f"/file?job={a['job']}&name=upload.mp4", f"/file?job={a['job']}&name=../{b['job']}/upload.mp4",
                f"/file?job=../../etc&name=passwd", f"/file?job={'x' * 32}&name=preview_anaglyph.png", "/../conf/app.yaml", "/status?job=nope"):
        assert request("GET", base + url)[0] == 404, url
    status, body, _ = request("POST", f"{base}/preview?job={a['job']}&layout=cubist")
    assert status == 400 and "unknown layout" in json.loads(body)["error"]
    status, body, _ = request("POST", f"{base}/preview?job={a['job']}&divergence=lots")
    assert status == 400


def test_page_is_served_with_a_content_policy(server):
    base, _ = server
    status, body, headers = request("GET", base + "/")
    assert status == 200 and b'id="file"' in body and "default-src 'self'" in headers["Content-Security-Policy"]


# --- a real browser ------------------------------------------------------------------------------


def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed here when absent (root with apt); else skip."""
    paths = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(paths) and shutil.which("apt-get") and hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"], capture_output=True, timeout=900)
        paths = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(paths):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    return paths  # type: ignore[return-value]


@pytest.mark.slow
def test_in_headless_chromium(server, tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser_path, driver_path = chromium()
    base, _ = server
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1300"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(base + "/")
        wait = WebDriverWait(driver, 300)
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
