"""A local web page to convert: upload, preview in 3D, convert with a progress bar, download.

A small threaded HTTP server from the standard library (no web framework to install or trust) that calls
the same functions as ``convert.py``: :func:`s3d.convert.preview` and :func:`s3d.convert.convert_file`.

Safety: it listens on 127.0.0.1 unless told otherwise; an upload is refused above ``max_upload_mb`` (before
it is read) or when its type is not a video or photo this tool converts; every job lives in its own folder
under ``workdir``, named by an unguessable token that only its uploader gets, and holds the upload under a
fixed name (the user's file name is never a path); only the files a job produced are served, by name from an
allowlist, so nothing outside a job's folder can be reached. One conversion runs at a time; others wait.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

from omegaconf import DictConfig

from s3d.config import compose
from s3d.convert import convert_file, preview
from s3d.errors import S3DError
from s3d.folder import VIDEO_SUFFIXES
from s3d.io.image import PHOTO_SUFFIXES
from s3d.layout import LAYOUTS

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("app_page.html")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CONTENT_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".mkv": "video/x-matroska", ".mp4": "video/mp4"}


class Refused(S3DError):
    """An upload refused before its body is read, with the HTTP status that says why."""

    def __init__(self, path: str, problem: str, status: HTTPStatus):
        super().__init__(path, problem)
        self.status = status


@dataclass
class Job:
    folder: Path
    name: str  # the user's file name, for the download name only
    upload: Path
    state: str = "uploaded"  # uploaded | queued | converting | done | error
    done: int = 0
    total: int = 0
    error: str = ""
    files: dict[str, Path] = field(default_factory=dict)  # what may be served, by name


class App:
    """Jobs and the work on them; the HTTP handler below only parses requests and calls these."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.workdir = Path(cfg.workdir).expanduser().resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(cfg.max_upload_mb * 1024 * 1024)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.one_at_a_time = threading.Semaphore(1)

    def convert_cfg(self, job: Job, layout: str, divergence: float, convergence: float) -> DictConfig:
        if layout not in LAYOUTS:
            raise S3DError(None, f"unknown layout '{layout}'")
        if not 0 <= divergence <= 10 or not 0 <= convergence <= 1:
            raise S3DError(None, "3D strength must be within 0-10 and the screen plane within 0-1")
        overrides = [*self.cfg.convert, f"input={job.upload}", f"output_dir={job.folder}", "overwrite=true", "quiet=true",
                     f"layout={layout}", f"divergence={divergence}", f"convergence={convergence}"]
        return compose("convert", overrides)

    def new_job(self, filename: str, length: int, body) -> str:
        """Store an upload of ``length`` bytes read from ``body`` as a new job; :class:`Refused` before reading."""
        if length > self.max_bytes:
            raise Refused(filename, f"larger than the upload limit of {self.cfg.max_upload_mb} MB", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        suffix = Path(filename).suffix.lower()
        if suffix not in VIDEO_SUFFIXES | PHOTO_SUFFIXES:
            raise Refused(filename, f"not a video or photo this tool converts ({', '.join(sorted(VIDEO_SUFFIXES | PHOTO_SUFFIXES))})", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        token = secrets.token_urlsafe(24)
        folder = self.workdir / token
        folder.mkdir()
        upload = folder / f"upload{suffix}"
        with open(upload, "wb") as f:
            remaining = length
            while remaining > 0:
                chunk = body.read(min(1 << 20, remaining))
                if not chunk:
                    shutil.rmtree(folder, ignore_errors=True)
                    raise S3DError(filename, "upload ended early")
                f.write(chunk)
                remaining -= len(chunk)
        with self.lock:
            self.jobs[token] = Job(folder, Path(filename).name, upload)
        return token

    def job(self, token: str) -> Job:
        job = self.jobs.get(token) if TOKEN.match(token or "") else None
        if job is None:
            raise KeyError(token)
        return job

    def preview(self, job: Job, layout: str, divergence: float, convergence: float) -> list[str]:
        anaglyph, wiggle = preview(self.convert_cfg(job, layout, divergence, convergence), job.upload, job.folder)
        job.files.update({anaglyph.name: anaglyph, wiggle.name: wiggle})
        return [anaglyph.name, wiggle.name]

    def start(self, job: Job, layout: str, divergence: float, convergence: float) -> None:
        cfg = self.convert_cfg(job, layout, divergence, convergence)
        job.state, job.done, job.error = "queued", 0, ""

        def work() -> None:
            with self.one_at_a_time:
                job.state = "converting"
                try:
                    written = convert_file(cfg, job.upload, progress=lambda done, total: (setattr(job, "done", done), setattr(job, "total", total)))
                    for path in written:
                        job.files[path.name] = path
                    job.state = "done"
                except S3DError as err:
                    job.state, job.error = "error", str(err).replace(str(job.folder) + "/", "")
                except Exception as err:  # a server thread must report, not die silently
                    log.exception("conversion failed")
                    job.state, job.error = "error", f"{type(err).__name__}: {err}"

        threading.Thread(target=work, name="s3d-app-convert", daemon=True).start()

    def status(self, job: Job) -> dict:
        outputs = [n for n in job.files if not n.startswith("preview_")]
        return {"state": job.state, "done": job.done, "total": job.total, "error": job.error, "downloads": outputs}

    def file(self, job: Job, name: str) -> Path:
        path = job.files.get(name)
        if path is None or not path.resolve().is_relative_to(job.folder.resolve()) or not path.is_file():
            raise KeyError(name)
        return path


class Handler(BaseHTTPRequestHandler):
    app: App  # set by :func:`make_server`
    server_version = "s3d"

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: dict, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}

    def _settings(self, q: dict[str, str]) -> tuple[str, float, float]:
        return q.get("layout", "full_sbs"), float(q.get("divergence", 2.0)), float(q.get("convergence", 0.5))

    def do_GET(self) -> None:
        route, q = urlparse(self.path).path, self._query()
        try:
            if route == "/":
                self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8", {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"})
            elif route == "/status":
                self._json(self.app.status(self.app.job(q.get("job", ""))))
            elif route == "/file":
                job = self.app.job(q.get("job", ""))
                path = self.app.file(job, q.get("name", ""))
                save_as = path.name.replace("upload", Path(job.name).stem, 1)
                body = path.read_bytes()
                self._send(200, body, CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                           {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(save_as)}"} if q.get("download") else None)
            else:
                self._error(404, "not found")
        except KeyError:
            self._error(404, "no such job or file")

    def do_POST(self) -> None:
        route, q = urlparse(self.path).path, self._query()
        try:
            if route == "/upload":
                token = self.app.new_job(q.get("name", "upload"), int(self.headers.get("Content-Length") or 0), self.rfile)
                self._json({"job": token})
            elif route == "/preview":
                job = self.app.job(q.get("job", ""))
                names = self.app.preview(job, *self._settings(q))
                self._json({"images": [f"file?job={q['job']}&name={n}&t={time.time():.0f}" for n in names]})
            elif route == "/convert":
                job = self.app.job(q.get("job", ""))
                if job.state in ("queued", "converting"):
                    self._error(409, "already converting")
                    return
                self.app.start(job, *self._settings(q))
                self._json({"state": job.state})
            else:
                self._error(404, "not found")
        except KeyError:
            self._error(404, "no such job or file")
        except Refused as err:
            self.close_connection = True  # its body was not read, so the connection cannot carry another request
            self._error(err.status, str(err))
        except ValueError:
            self._error(400, "bad number in the settings")
        except S3DError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err).replace(str(self.app.workdir), "<workdir>"))


def make_server(cfg: DictConfig) -> ThreadingHTTPServer:
    app = App(cfg)
    handler = type("S3DHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((cfg.host, int(cfg.port)), handler)
    server.daemon_threads = True
    return server


def serve(cfg: DictConfig) -> None:
    """Run the page until Ctrl-C."""
    server = make_server(cfg)
    host, port = server.server_address[:2]
    print(f"s3d: open http://{host}:{port}/ (Ctrl-C to stop); files go to {Path(cfg.workdir).expanduser()}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()

