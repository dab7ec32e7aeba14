"""`petar serve`: the HTTP service (FastAPI on uvicorn) that keeps the engines warm. The API is in docs/service.md.

Summary (JSON bodies unless said; every endpoint but `GET /health` needs `Authorization: Bearer <token>` when the
server has a token):

    GET  /health                         {"status": "ok", "petar": version}                      (no auth)
    GET  /info                           versions, device, loaded models (id, revision, sha256), queue, limits
    POST /volumes        NIfTI bytes  →  201 {"volume_id", "shape", "dtype", "spacing", "origin", "direction"}
    GET  /volumes/{id}[?compress=0|1] →  NIfTI bytes (.nii.gz unless compress=0)
    DELETE /volumes/{id}              →  204
    POST /measure  {"pet": REF, "mask": REF, "ct": REF?, "label"?, "slice_origin"?, "suv_type"?}
                                      →  Measurement JSON {"suv_type", "units", "lesions"}
    POST /segment  {"pet": REF, "point": [x,y,z], "space"?, "method"?, "percent"?, "threshold"?, "snap_mm"?,
                    "max_radius_mm"?, "max_volume_ml"?, "min_contrast"?, "full_connectivity"?}
                                      →  {"segmentation", "lesion", "mask": {"volume_id"}}
    POST /jobs     {"kind": "report"|"ground", "params": {...}}  →  202 {"job_id", "status"}; 503 + Retry-After
    GET  /jobs/{id}[?since=V&wait=S]  →  {"job_id", "status", "stage", "tokens", "text", "version", "result",
                                          "error", ...}   (long-polls up to S ≤ 30 s for a version above V)
    POST /jobs/{id}/cancel            →  the job document

REF is {"volume_id": "<sha256 from POST /volumes>"} or, only when the server runs with --data-root, {"path": "..."}
inside that root. Errors: {"error": "<one line>", "exit_code": n, "type": "<petar error class>"} with 400 (bad
input, exit 2), 401 (token), 403 (path outside the data root or paths off), 404 (unknown volume → type
VolumeNotFound, or job), 413 (body over the limit), 424 (model or dependency missing, exit 3), 503 (queue full),
500 (internal, exit 1).

Logs carry request method, route (ids elided), status, body size and time only — never file names, texts, DICOM tags
or anything from a body; uvicorn's access log is off. No CORS middleware: browsers on other origins get nothing.
"""
# no `from __future__ import annotations`: FastAPI must see the real classes of the handlers (local imports)

import contextlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
import time

from .. import __version__
from ..errors import InputError, PetarError
from . import codec
from .jobs import FINAL, QueueFull
from .study_routes import StudyCalls

log = logging.getLogger("petar.service")

from .state import (DEFAULT_CACHE_MB, DEFAULT_MAX_BODY_MB, DEFAULT_QUEUE_SIZE, _ID_SEGMENT, Service, _error_body,
                    _status_for, describe)


class Guard:
    """Outermost ASGI layer: token check before anything is read, body limit without unbounded reads, path-only log."""

    def __init__(self, app, token: str | None, max_body: int):
        self.app, self.token, self.max_body = app, token, int(max_body)

    async def _send_json(self, send, status: int, doc: dict, headers=()):
        body = json.dumps(doc).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *headers]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        method, route = scope["method"], _ID_SEGMENT.sub("/{id}", scope["path"])
        status = {"code": 0}
        size = {"in": 0}

        async def logged_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            headers = dict(scope.get("headers") or [])
            if self.token and not (method in ("GET", "HEAD") and scope["path"] == "/health"):
                auth = headers.get(b"authorization", b"")
                expected = b"Bearer " + self.token.encode()
                if not hmac.compare_digest(auth, expected):
                    return await self._send_json(logged_send, 401, {
                        "error": "missing or wrong token: send 'Authorization: Bearer <token>'", "exit_code": 2,
                        "type": "Unauthorized"}, [(b"www-authenticate", b"Bearer")])
            too_big = {"error": f"request body over the server's limit of {self.max_body // 2 ** 20} MB: raise "
                                "--max-body-mb or send a smaller volume", "exit_code": 2, "type": "TooLarge"}
            length = headers.get(b"content-length")
            if length is not None:
                try:
                    declared = int(length)
                except ValueError:
                    return await self._send_json(logged_send, 400, {"error": "bad Content-Length", "exit_code": 2,
                                                                    "type": "InputError"})
                if declared > self.max_body:
                    return await self._send_json(logged_send, 413, too_big, [(b"connection", b"close")])
            chunks, more = [], True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size["in"] += len(chunk)
                if size["in"] > self.max_body:
                    return await self._send_json(logged_send, 413, too_big, [(b"connection", b"close")])
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            replayed = {"done": False}

            async def replay():
                if not replayed["done"]:
                    replayed["done"] = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            try:
                await self.app(scope, replay, logged_send)
            except Exception as exc:  # noqa: BLE001 - already answered by the app's handler, or answer here
                if not status["code"]:
                    await self._send_json(logged_send, 500, _error_body(exc))
        finally:
            log.info("%s %s %s in=%dB %.1fms", method, route, status["code"], size["in"],
                     (time.perf_counter() - t0) * 1000)


# ---- the app --------------------------------------------------------------------------------------------------
def create_app(token: str | None = None, data_root=None, max_body_mb: float = DEFAULT_MAX_BODY_MB,
               queue_size: int = DEFAULT_QUEUE_SIZE, preload: str | None = None, cache_mb: float = DEFAULT_CACHE_MB):
    """The ASGI app (FastAPI wrapped in the auth/body-limit guard). `.state.service` holds engines and jobs."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    service = Service(data_root=data_root, queue_size=queue_size, cache_mb=cache_mb, preload=preload)
    studies = StudyCalls(service)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        service.jobs.shutdown()

    app = FastAPI(title="petar service", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.service = service

    def error(exc: BaseException) -> JSONResponse:
        return JSONResponse(_error_body(exc), status_code=_status_for(exc))

    @app.exception_handler(PetarError)
    async def _petar_error(_request, exc):
        return error(exc)

    @app.exception_handler(QueueFull)
    async def _queue_full(_request, exc):
        return JSONResponse({"error": str(exc), "exit_code": 1, "type": "QueueFull"}, status_code=503,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc):
        return JSONResponse({"error": str(exc.detail), "exit_code": 2, "type": "HTTPError"},
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, exc):
        return JSONResponse({"error": "invalid request parameters", "exit_code": 2, "type": "InputError"},
                            status_code=400)

    @app.exception_handler(Exception)
    async def _internal(_request, exc):
        log.error("internal error type=%s", type(exc).__name__)
        return error(exc)

    async def json_body(request: Request) -> dict:
        raw = await request.body()
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            raise InputError("the request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise InputError("the request body must be a JSON object")
        return doc

    @app.get("/health")
    async def health():
        return {"status": "ok", "petar": __version__}

    @app.get("/info")
    async def info():
        return await run_in_threadpool(service.info)

    @app.post("/volumes", status_code=201)
    async def upload(request: Request):
        raw = await request.body()

        def store():
            vol = codec.decode(raw)
            return describe(service.store.put(vol), vol)

        return await run_in_threadpool(store)

    @app.get("/volumes/{volume_id}")
    async def download(volume_id: str, compress: int = 1, crop: int = 0):
        vol = service.store.get(volume_id)
        headers = {}
        if crop:            # a mask's foreground box only; X-Petar-Offset (z,y,x) says where it sits in the grid
            vol, offset = await run_in_threadpool(codec.crop_to_foreground, vol)
            headers = {"X-Petar-Offset": ",".join(map(str, offset)), "X-Petar-Shape": ",".join(
                map(str, service.store.get(volume_id).shape))}
        data = await run_in_threadpool(codec.encode, vol, bool(compress))
        return Response(data, media_type="application/octet-stream", headers=headers)

    @app.delete("/volumes/{volume_id}", status_code=204)
    async def forget(volume_id: str):
        service.store.delete(volume_id)
        return Response(status_code=204)

    @app.post("/measure")
    async def measure(request: Request):
        return await run_in_threadpool(service.measure, await json_body(request))

    @app.post("/segment")
    async def segment(request: Request):
        return await run_in_threadpool(service.segment, await json_body(request))

    @app.post("/study/{op}")
    async def study(op: str, request: Request):
        return await run_in_threadpool(studies.call, op, await json_body(request))

    @app.post("/jobs", status_code=202)
    async def submit(request: Request):
        job = await run_in_threadpool(service.submit, await json_body(request))
        return {"job_id": job.id, "kind": job.kind, "status": job.status}

    def job_or_404(job_id: str):
        job = service.jobs.get(job_id)
        if job is None:
            raise StarletteHTTPException(404, "no such job (unknown id, or finished long ago and dropped)")
        return job

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str, since: int = -1, wait: float = 0.0):
        job = job_or_404(job_id)
        wait = min(max(wait, 0.0), 30.0)
        if wait and job.version <= since and job.status not in FINAL:
            await run_in_threadpool(job.wait_change, since, wait)
        return job.to_dict()

    @app.post("/jobs/{job_id}/cancel")
    async def cancel(job_id: str):
        job_or_404(job_id)
        return service.jobs.cancel(job_id).to_dict()

    return Guard(app, token, int(max_body_mb * 2 ** 20))


# ---- running it -----------------------------------------------------------------------------------------------
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def bind_socket(host: str, port: int) -> socket.socket:
    host = "127.0.0.1" if host == "localhost" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): pick another --port "
                         "(0 = any free port)") from None
    with contextlib.suppress(OSError):      # accepted sockets inherit it (Linux): no Nagle delay on small answers
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(128)
    return sock


def url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app, sock: socket.socket):
    import uvicorn

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", server_header=False,
                            timeout_keep_alive=30)
    return uvicorn.Server(config)


class ServerThread:
    """A real uvicorn server on a loopback socket in a background thread (tests, benchmarks, embedding)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.sock = bind_socket(host, port)
        self.url = url_for(self.sock)
        self.server = make_server(app, self.sock)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="petar-service")

    def start(self, timeout: float = 20.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("the service did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _alive(pid: int) -> bool:
    if os.name == "nt":  # pragma: no cover - Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)   # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259                                          # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(parent_pid: int, server, interval: float = 0.5) -> threading.Thread:
    """Ask the server to exit when `parent_pid` dies (the launching Slicer or script crashed or was killed)."""

    def watch():
        while not server.should_exit:
            if not _alive(parent_pid):
                log.warning("parent process gone: shutting down")
                server.should_exit = True
                time.sleep(10)
                os._exit(0)                   # graceful shutdown hung: leave anyway
            time.sleep(interval)

    t = threading.Thread(target=watch, daemon=True, name="petar-parent-watch")
    t.start()
    return t


def serve(host: str = "127.0.0.1", port: int = 8765, token: str | None = None, parent_pid: int | None = None,
          announce=print, **app_kw) -> int:
    """Bind, announce {"url", "pid"} as one JSON line on stdout, serve until stopped; keeps a pid file."""
    from ..report.weights import petar_home

    sock = bind_socket(host, port)
    url = url_for(sock)
    app = create_app(token=token, **app_kw)
    server = make_server(app, sock)
    run_dir = petar_home() / "run"
    pid_file = run_dir / f"serve-{os.getpid()}.json"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(json.dumps({"pid": os.getpid(), "url": url, "parent_pid": parent_pid,
                                        "started": time.time()}))
    except OSError:
        pid_file = None
    if parent_pid:
        watch_parent(int(parent_pid), server)
    announce(json.dumps({"url": url, "pid": os.getpid()}))
    sys.stdout.flush()
    log.info("petar service listening (%s)", "token required" if token else "no token, loopback only")
    if threading.current_thread() is threading.main_thread():
        import signal

        # uvicorn re-raises the SIGTERM it caught once it has shut down; exit through Python so `finally` runs
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run(sockets=[sock])
    finally:
        if pid_file is not None:
            with contextlib.suppress(OSError):
                pid_file.unlink()
    return 0


__all__ = ["DEFAULT_MAX_BODY_MB", "DEFAULT_QUEUE_SIZE", "LOCAL_HOSTS", "ServerThread", "Service", "create_app",
           "serve"]
