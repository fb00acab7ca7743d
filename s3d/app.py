"""A local web page to convert: upload, preview in 3D, convert with a progress bar, download.

A small threaded HTTP server from the standard library (no web framework to install or trust) that calls
the same functions as ``convert.py``: :func:`s3d.convert.preview` and :func:`s3d.convert.convert_file`.

What it defends against (Jupyter and Gradio are the references; each is tested in ``tests/test_app.py``):

- other websites: every request needs the launch token (printed in the URL at start, then kept in a
  ``SameSite=Strict`` cookie); the ``Host`` must be this computer's (127.0.0.1, localhost, [::1], or a host
  the user allows), so a DNS-rebinding site gets 403; a POST without this page's own ``Origin`` gets 403
  (no cross-site writes); the page cannot be framed (``frame-ancestors 'none'``).
- floods and stalls: a bound on open connections (503 beyond it), a socket timeout, one queue for
  previews and conversions (one runs at a time, a bounded number wait), uploads with a declared length
  only (411 otherwise, 400 when the body is shorter or longer than it), the frame-size check before any
  pixel is decoded, a decompression bomb refused with a message.
- other local users: job folders are created 0700 and deleted after ``retention_hours``.

Each upload gets a folder named by an unguessable token that only its uploader gets, stored under a fixed
name (the user's file name is never a path); only files a job produced are served, by name.
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import os
import re
import secrets
import select
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from queue import Full, Queue
from urllib.parse import parse_qs, quote, urlparse

from omegaconf import DictConfig, OmegaConf

from s3d.config import compose
from s3d.convert import convert_file, preview
from s3d.depth.auto import choose_depth, describe, fetch_preferred, resolve_depth
from s3d.errors import S3DError
from s3d.io.image import PHOTO_SUFFIXES
from s3d.io.video import VIDEO_SUFFIXES
from s3d.layout import LAYOUTS

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("app_page.html")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CONTENT_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".mkv": "video/x-matroska", ".mp4": "video/mp4"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'"


class Refused(S3DError):
    """A request refused with the HTTP status that says why."""

    def __init__(self, path: str | None, problem: str, status: HTTPStatus):
        super().__init__(path, problem)
        self.status = status


def host_name(header: str | None) -> str | None:
    """The host of a ``Host`` header or an ``Origin``'s netloc, lower case, without port or brackets."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else None
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_hosts(listen_host: str, extra: list[str]) -> frozenset[str]:
    """Names the page answers to: this computer's, the address it listens on (unless a wildcard), ``extra``."""
    hosts = set(LOCAL_HOSTS) | {h.lower().strip("[]") for h in extra}
    if listen_host not in ("", "0.0.0.0", "::"):
        hosts.add(listen_host.lower().strip("[]"))
    return frozenset(hosts)


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
    touched: float = field(default_factory=time.time)  # last request about it, for the retention period


class WorkQueue:
    """One worker thread runs previews and conversions in their order of arrival; at most ``size`` wait."""

    def __init__(self, size: int):
        self.tasks: Queue[tuple[Callable[[], object], Future]] = Queue(maxsize=size)
        threading.Thread(target=self._run, name="s3d-app-work", daemon=True).start()

    def submit(self, task: Callable[[], object]) -> Future:
        future: Future = Future()
        try:
            self.tasks.put_nowait((task, future))
        except Full:
            raise Refused(None, "busy: too many previews and conversions waiting; try again later", HTTPStatus.SERVICE_UNAVAILABLE) from None
        return future

    def _run(self) -> None:
        while True:
            task, future = self.tasks.get()
            try:
                future.set_result(task())
            except BaseException as err:  # handed to whoever waits on it
                future.set_exception(err)


class App:
    """Jobs and the work on them; the HTTP handler below only parses requests and calls these."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.workdir = Path(cfg.workdir).expanduser().resolve()
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.workdir.chmod(0o700)
        self.max_bytes = int(cfg.max_upload_mb * 1024 * 1024)
        self.token = cfg.token or secrets.token_urlsafe(24)
        if len(self.token) < 16:
            raise S3DError(None, "token= must be at least 16 characters (or null for a random one)")
        # Composed once: Hydra's compose is global state, unusable inside @hydra.main and across threads.
        self.base = compose("convert", [*cfg.convert, "overwrite=true", "quiet=true"])
        self.retention = float(cfg.retention_hours) * 3600
        self.depth_fetch = {"state": "idle", "error": ""}  # the better depth network, fetched when the page asks
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.work = WorkQueue(int(cfg.max_queued))
        self.sweep()
        if self.retention > 0:
            threading.Thread(target=self._sweep_forever, name="s3d-app-sweep", daemon=True).start()

    def check_token(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def convert_cfg(self, job: Job, layout: str, divergence: float, convergence: float) -> DictConfig:
        if layout not in LAYOUTS:
            raise S3DError(None, f"unknown layout '{layout}'")
        if not 0 <= divergence <= 10 or not 0 <= convergence <= 1:
            raise S3DError(None, "3D strength must be within 0-10 and the screen plane within 0-1")
        cfg = copy.deepcopy(self.base)
        for key, value in {
            "input": str(job.upload),
            "output_dir": str(job.folder),
            "layout": layout,
            "divergence": divergence,
            "convergence": convergence,
        }.items():
            OmegaConf.update(cfg, key, value)
        resolve_depth(cfg, fetch=False)  # the page fetches a better network only when asked (fetch_depth)
        return cfg

    def depth(self) -> dict:
        """Which depth network the jobs use, and whether a better one can be fetched (``depth=auto``)."""
        choice = choose_depth(self.base.depth, fetch=False)
        better = None
        if self.base.depth.get("auto") and not choice.preferred:
            prefer = self.base.depth.prefer
            better = f"{prefer.get('title')} ({prefer.get('license')}, about 100 MB)"
        line = choice.line if choice.preferred else describe(choice.cfg)
        return {"line": line, "preferred": choice.preferred, "better": better, **self.depth_fetch}

    def fetch_depth(self) -> None:
        """Fetch ``depth=auto``'s preferred network in the background; :meth:`depth` reports how it went."""
        if not self.base.depth.get("auto"):
            raise Refused(None, "the depth network is set explicitly (convert=[depth=...]); nothing to fetch", HTTPStatus.BAD_REQUEST)
        with self.lock:
            if self.depth_fetch["state"] == "fetching":
                raise Refused(None, "already fetching", HTTPStatus.CONFLICT)
            self.depth_fetch.update(state="fetching", error="")

        def work() -> None:
            try:
                fetch_preferred(self.base.depth.prefer, quiet=True)
                self.depth_fetch.update(state="done")
            except S3DError as err:
                self.depth_fetch.update(state="failed", error=str(err))
            except Exception as err:  # the thread must report, not die
                log.exception("depth fetch failed")
                self.depth_fetch.update(state="failed", error=f"{type(err).__name__}: {err}")

        threading.Thread(target=work, name="s3d-depth-fetch", daemon=True).start()

    def new_job(self, filename: str, length: int, body, extra_bytes: Callable[[], bool]) -> str:
        """Store an upload of ``length`` bytes read from ``body`` as a new job.

        :class:`Refused` before a byte is read for size and type; after, for a body that ends early or
        stalls past the socket timeout, or runs on past ``length`` (``extra_bytes()``): then nothing is kept."""
        if length > self.max_bytes:
            raise Refused(filename, f"larger than the upload limit of {self.cfg.max_upload_mb} MB", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        suffix = Path(filename).suffix.lower()
        if suffix not in VIDEO_SUFFIXES | PHOTO_SUFFIXES:
            raise Refused(
                filename, f"not a video or photo this tool converts ({', '.join(sorted(VIDEO_SUFFIXES | PHOTO_SUFFIXES))})", HTTPStatus.UNSUPPORTED_MEDIA_TYPE
            )
        token = secrets.token_urlsafe(24)
        folder = self.workdir / token
        folder.mkdir(mode=0o700)
        upload = folder / f"upload{suffix}"
        try:
            with os.fdopen(os.open(upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                remaining = length
                while remaining > 0:
                    try:
                        chunk = body.read1(min(1 << 20, remaining))  # what has arrived: a timeout loses nothing read
                    except TimeoutError:
                        chunk = b""
                    if not chunk:
                        raise Refused(
                            filename, f"upload ended after {length - remaining} of the {length} bytes its Content-Length announced", HTTPStatus.BAD_REQUEST
                        )
                    f.write(chunk)
                    remaining -= len(chunk)
            if extra_bytes():
                raise Refused(filename, f"the body runs on past its Content-Length of {length} bytes", HTTPStatus.BAD_REQUEST)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self.lock:
            self.jobs[token] = Job(folder, Path(filename).name, upload)
        return token

    def job(self, token: str) -> Job:
        job = self.jobs.get(token) if TOKEN.match(token or "") else None
        if job is None:
            raise KeyError(token)
        job.touched = time.time()
        return job

    def preview(self, job: Job, layout: str, divergence: float, convergence: float) -> list[str]:
        cfg = self.convert_cfg(job, layout, divergence, convergence)
        images = self.work.submit(lambda: preview(cfg, job.upload, job.folder)).result()
        job.files.update({p.name: p for p in images})
        return [p.name for p in images]

    def start(self, job: Job, layout: str, divergence: float, convergence: float) -> None:
        cfg = self.convert_cfg(job, layout, divergence, convergence)

        def work() -> None:
            job.state = "converting"
            try:
                written = convert_file(cfg, job.upload, progress=lambda done, total: (setattr(job, "done", done), setattr(job, "total", total)))
                for path in written:
                    job.files[path.name] = path
                job.state = "done"
            except S3DError as err:
                job.state, job.error = "error", str(err).replace(str(job.folder) + "/", "")
            except Exception as err:  # the worker must report, not die
                log.exception("conversion failed")
                job.state, job.error = "error", f"{type(err).__name__}: {err}"
            finally:
                job.touched = time.time()

        previous = job.state, job.done, job.error
        job.state, job.done, job.error = "queued", 0, ""  # before the worker can take it, which sets "converting"
        try:
            self.work.submit(work)
        except Refused:
            job.state, job.done, job.error = previous
            raise

    def status(self, job: Job) -> dict:
        outputs = [n for n in job.files if not n.startswith("preview_")]
        return {"state": job.state, "done": job.done, "total": job.total, "error": job.error, "downloads": outputs}

    def file(self, job: Job, name: str) -> Path:
        path = job.files.get(name)
        if path is None or not path.resolve().is_relative_to(job.folder.resolve()) or not path.is_file():
            raise KeyError(name)
        return path

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete job folders idle longer than the retention period (also those of earlier runs); not
        while queued or converting. Returns the tokens removed."""
        if self.retention <= 0:
            return []
        now = time.time() if now is None else now
        removed = []
        for folder in self.workdir.iterdir():
            if not folder.is_dir() or not TOKEN.match(folder.name):
                continue
            job = self.jobs.get(folder.name)
            touched = job.touched if job else folder.stat().st_mtime
            if now - touched > self.retention and (job is None or job.state not in ("queued", "converting")):
                with self.lock:
                    self.jobs.pop(folder.name, None)
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(min(600.0, max(1.0, self.retention / 10)))
            self.sweep()


class Handler(BaseHTTPRequestHandler):
    app: App  # set by :func:`make_server`
    hosts: frozenset[str]
    port: int
    server_version = "s3d"
    protocol_version = "HTTP/1.1"
    head_only = False

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    @property
    def cookie_name(self) -> str:
        return f"s3d_token_{self.port}"  # cookies ignore the port: two pages on one computer keep theirs apart

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": CSP,
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            **(extra or {}),
        }.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not self.head_only:
            self.wfile.write(body)

    def _json(self, data: dict, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}

    def _settings(self, q: dict[str, str]) -> tuple[str, float, float]:
        numbers = {}
        for key, default in (("divergence", 2.0), ("convergence", 0.5)):
            try:
                numbers[key] = float(q.get(key, default))
            except ValueError:
                raise S3DError(None, f"{key} must be a number, got '{q[key]}'") from None
        return q.get("layout", "full_sbs"), numbers["divergence"], numbers["convergence"]

    def _guard(self, write: bool) -> None:
        """Host, then Origin for writes, then the launch token: :class:`Refused` with 400/403."""
        host = host_name(self.headers.get("Host"))
        if host is None:
            raise Refused(None, "no Host header", HTTPStatus.BAD_REQUEST)
        if host not in self.hosts:
            raise Refused(None, f"Host '{host}' is not this computer; open the address app.py printed (allowed_hosts= adds names)", HTTPStatus.FORBIDDEN)
        if write:
            origin = self.headers.get("Origin")
            parsed = urlparse(origin or "")
            if not origin or parsed.scheme != "http" or host_name(parsed.netloc) not in self.hosts or (parsed.port or 80) != self.port:
                raise Refused(None, f"refused a write from origin '{origin}': only this page may upload or convert", HTTPStatus.FORBIDDEN)
        cookie = SimpleCookie(self.headers.get("Cookie") or "")
        given = cookie[self.cookie_name].value if self.cookie_name in cookie else self.headers.get("X-S3D-Token")
        if not self.app.check_token(given):
            raise Refused(None, "no valid token: open the address app.py printed at start (it ends in ?token=...)", HTTPStatus.FORBIDDEN)

    def _respond(self, route_handler: Callable[[], None], write: bool) -> None:
        try:
            self._guard(write)
            route_handler()
        except KeyError:
            self._error(404, "no such job or file")
        except Refused as err:
            self.close_connection = True  # a body may be left unread: this connection cannot carry another request
            self._error(err.status, str(err))
        except S3DError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err).replace(str(self.app.workdir), "<workdir>"))
        except Exception as err:  # report it and keep serving
            log.exception("request failed: %s", self.path)
            self.close_connection = True
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(err).__name__}: {err}")

    def do_GET(self) -> None:
        route, q = urlparse(self.path).path, self._query()
        if route == "/" and "token" in q:  # the printed address: keep its token in a cookie, then drop it from the URL
            if host_name(self.headers.get("Host")) in self.hosts and self.app.check_token(q["token"]):
                cookie = f"{self.cookie_name}={self.app.token}; HttpOnly; SameSite=Strict; Path=/"
                self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})
                return
        self._respond(lambda: self._get(route, q), write=False)

    def do_HEAD(self) -> None:
        self.head_only = True
        self.do_GET()

    def _get(self, route: str, q: dict[str, str]) -> None:
        if route == "/":
            self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif route == "/status":
            self._json(self.app.status(self.app.job(q.get("job", ""))))
        elif route == "/depth":
            self._json(self.app.depth())
        elif route == "/file":
            job = self.app.job(q.get("job", ""))
            path = self.app.file(job, q.get("name", ""))
            save_as = path.name.replace("upload", Path(job.name).stem, 1)
            self._send(
                200,
                path.read_bytes(),
                CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(save_as)}"} if q.get("download") else None,
            )
        else:
            self._error(404, "not found")

    def do_POST(self) -> None:
        route, q = urlparse(self.path).path, self._query()
        self._respond(lambda: self._post(route, q), write=True)

    def _length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise Refused(None, "uploads must say their length (Content-Length); chunked transfer is not taken", HTTPStatus.LENGTH_REQUIRED)
        value = self.headers.get("Content-Length")
        if value is None:
            raise Refused(None, "uploads must say their length (Content-Length)", HTTPStatus.LENGTH_REQUIRED)
        if not value.isdigit():
            raise Refused(None, f"bad Content-Length '{value}'", HTTPStatus.BAD_REQUEST)
        return int(value)

    def _extra_bytes(self) -> bool:
        """Did the client send more than it announced? Looked for briefly (it arrives with the body), in
        the read buffer and on the socket, without blocking."""
        select.select([self.connection], [], [], 0.05)
        timeout = self.connection.gettimeout()
        self.connection.settimeout(0)
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False
        finally:
            self.connection.settimeout(timeout)

    def _post(self, route: str, q: dict[str, str]) -> None:
        if route == "/upload":
            token = self.app.new_job(q.get("name", "upload"), self._length(), self.rfile, self._extra_bytes)
            self.close_connection = True  # one upload per connection: nothing of its body can be read as a request
            self._json({"job": token})
            return
        if int(self.headers.get("Content-Length") or 0) or self.headers.get("Transfer-Encoding"):
            raise Refused(None, "this request takes no body", HTTPStatus.BAD_REQUEST)
        if route == "/depth/fetch":
            self.app.fetch_depth()
            self._json(self.app.depth())
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


class Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once: beyond that, 503 and close."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[Handler], max_connections: int):
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 5\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(cfg: DictConfig) -> Server:
    app = App(cfg)
    attrs = {"app": app, "hosts": allowed_hosts(cfg.host, list(cfg.allowed_hosts)), "timeout": float(cfg.socket_timeout), "port": 0}
    handler = type("S3DHandler", (Handler,), attrs)
    server = Server((cfg.host, int(cfg.port)), handler, int(cfg.max_connections))
    handler.port = server.server_address[1]
    return server


def page_url(server: Server) -> str:
    """The address to open, with the launch token."""
    host = server.server_address[0]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
    return f"http://{host}:{server.server_address[1]}/?token={server.RequestHandlerClass.app.token}"


def serve(cfg: DictConfig) -> None:
    """Run the page until Ctrl-C."""
    server = make_server(cfg)
    print(f"s3d: open {page_url(server)} (Ctrl-C to stop); files go to {Path(cfg.workdir).expanduser()}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
