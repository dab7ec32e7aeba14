"""`Client`: talk to a `petar serve` service with nothing beyond the standard library, numpy and SimpleITK.

That is what 3D Slicer's Python ships, so the Slicer modules use this without torch, FastAPI or httpx installed.
Methods mirror the Python API (docs/service.md): `measure`, `segment`, `report`, `ground`, plus `health`, `info`
and the job helpers `progress`, `wait`, `cancel`. Volumes are `petar.Volume` objects or image file paths (read here,
as `petar.read_pet` / `read_volume` would) or a server reference dict ({"volume_id": ...} or {"path": ...}).

Each volume is uploaded once: the client remembers the server's id per Volume object (with a crc32 fingerprint of
its voxels and geometry, so an array changed in place is sent again) and per file (path, size, mtime). When the
server has dropped a volume (its cache is bounded), the client uploads it again and repeats the call, once.
On loopback volumes travel as plain .nii (copying is faster than compressing); elsewhere as .nii.gz (level 1).

Errors carry the server's one-line message: petar's own errors arrive as the same classes (InputError, LeakError,
DeviceMemoryError, ModelMissingError), with `.status` set; other HTTP failures raise `ServiceError` subclasses
(401 → AuthError, 413/403/404 → ServiceInputError, 503 → ServiceBusy with `.retry_after`, unreachable →
ServiceUnavailable). A refused connection is retried for `connect_retry_s` (a local server may still be starting).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
import weakref
from pathlib import Path

import numpy as np

from ..errors import DeviceMemoryError, InputError, LeakError, ModelMissingError, PetarError
from ..volume import Volume
from . import codec


class ServiceError(PetarError):
    """The service answered with an error that is not one of petar's own, or could not be reached."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ServiceInputError(InputError, ServiceError):
    """A request the server refused as given (400, 403, 404, 413): exit 2."""


class AuthError(ServiceInputError):
    """401: missing or wrong token."""


class ServiceBusy(ServiceError):
    """503: the job queue is full; `.retry_after` seconds is the server's hint."""


class ServiceUnavailable(ServiceError):
    """Nothing answers at the URL (after retrying refused connections), or the connection broke."""


class JobCancelled(ServiceError):
    """The job was cancelled before it finished."""


class _VolumeMissing(ServiceInputError):
    pass


_PETAR_TYPES = {"InputError": InputError, "LeakError": LeakError, "DeviceMemoryError": DeviceMemoryError,
                "ModelMissingError": ModelMissingError}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def error_from(status: int | None, doc: dict, retry_after=None) -> PetarError:
    """The exception for an error document {"error", "exit_code", "type"} (HTTP answer or failed job)."""
    msg = str(doc.get("error") or f"HTTP {status}")
    kind = doc.get("type")
    if kind in _PETAR_TYPES:
        exc = _PETAR_TYPES[kind](msg)
        exc.status = status
        return exc
    if kind == "VolumeNotFound":
        exc = _VolumeMissing(msg, status)
        exc.volume_id = doc.get("volume_id")
        return exc
    if status == 401:
        return AuthError(msg, status)
    if status == 503:
        return ServiceBusy(msg, status, retry_after)
    if (status is not None and 400 <= status < 500) or doc.get("exit_code") == 2:
        return ServiceInputError(msg, status)
    if doc.get("exit_code") == 3:
        exc = ModelMissingError(msg)
        exc.status = status
        return exc
    return ServiceError(msg, status)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


class Client:
    """A connection to a petar service; safe to share between threads (one keep-alive connection per thread)."""

    def __init__(self, url: str = "http://127.0.0.1:8765", token: str | None = None, timeout: float = 600.0,
                 connect_retry_s: float = 5.0, compress: bool | None = None):
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"service URL {url!r}: use http://HOST:PORT or https://HOST:PORT")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._scheme, self._host = parts.scheme, parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/")
        self.token = token
        self.timeout = float(timeout)
        self.connect_retry_s = float(connect_retry_s)
        self.compress = (self._host not in _LOOPBACK) if compress is None else bool(compress)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # Volume -> (fingerprint, id)
        self._files: dict = {}                                                # (path, mtime, size, role) -> id

    # ---- transport --------------------------------------------------------------------------------------------
    def _connection(self, fresh: bool = False):
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout)
            conn.connect()
            # small request/response pairs: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per call
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                timeout: float | None = None):
        """(status, headers, bytes) for one HTTP request; raises the mapped error for status ≥ 400."""
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
        deadline = time.monotonic() + self.connect_retry_s
        delay, reused_retry = 0.05, True
        while True:
            reused = getattr(self._local, "conn", None) is not None
            try:
                conn = self._connection()
                if timeout is not None:
                    conn.timeout = timeout
                    if conn.sock is not None:
                        conn.sock.settimeout(timeout)
                try:
                    conn.request(method, self._base + path, body=body, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    if body is None or len(body) < (1 << 16):
                        raise
                    try:                     # the server refused a large body early (413/401): read its answer
                        resp = conn.getresponse()
                    except (OSError, http.client.HTTPException):
                        self._drop_connection()
                        raise ServiceInputError(f"the server closed the connection while receiving "
                                                f"{len(body) / 2 ** 20:.1f} MB (over its --max-body-mb?)") from None
                else:
                    resp = conn.getresponse()
                data = resp.read()
                status, resp_headers = resp.status, resp.headers
                if resp.getheader("connection", "").lower() == "close":
                    self._drop_connection()
                break
            except ConnectionRefusedError:
                self._drop_connection()
                if time.monotonic() >= deadline:
                    raise ServiceUnavailable(f"no petar service answers at {self.url} (connection refused): start "
                                             "it with `petar serve` or petar.service.launch()") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as exc:
                self._drop_connection()
                if reused and reused_retry:          # the server closed an idle keep-alive connection: once more
                    reused_retry = False
                    continue
                raise ServiceUnavailable(f"the connection to {self.url} broke ({type(exc).__name__})") from None
            except socket.timeout:
                self._drop_connection()
                raise ServiceUnavailable(f"{method} {path.split('?')[0]} to {self.url} timed out after "
                                         f"{timeout or self.timeout:g} s") from None
            except OSError as exc:
                self._drop_connection()
                raise ServiceUnavailable(f"cannot reach {self.url} ({exc.strerror or exc})") from None
            finally:
                if timeout is not None and getattr(self._local, "conn", None) is not None:
                    self._local.conn.timeout = self.timeout
                    if self._local.conn.sock is not None:
                        self._local.conn.sock.settimeout(self.timeout)
        if status >= 400:
            try:
                doc = json.loads(data)
                doc = doc if isinstance(doc, dict) else {}
            except ValueError:
                doc = {"error": f"HTTP {status} from {self.url}"}
            retry = resp_headers.get("Retry-After")
            raise error_from(status, doc, float(retry) if retry else None)
        return status, resp_headers, data

    def _json(self, method: str, path: str, doc=None, timeout: float | None = None):
        body = None if doc is None else json.dumps(doc, default=_json_default).encode()
        _, _, data = self.request(method, path, body, "application/json" if body is not None else None, timeout)
        return json.loads(data) if data else None

    def close(self) -> None:
        self._drop_connection()

    # ---- service ---------------------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "/health")

    def info(self) -> dict:
        return self._json("GET", "/info")

    # ---- volumes ---------------------------------------------------------------------------------------------
    def upload(self, volume: Volume) -> str:
        """Send a Volume (always, no cache) → its server id."""
        data = codec.encode(volume, compress=self.compress)
        _, _, answer = self.request("POST", "/volumes", data)
        return json.loads(answer)["volume_id"]

    def download(self, volume_id: str, mask: bool = False, like: Volume | None = None) -> Volume:
        """A server volume as a Volume; it is remembered as already on the server. `mask=True` fetches only the
        foreground box and rebuilds the grid here (on `like`'s geometry when given): kilobytes, not the grid."""
        if not mask:
            _, _, data = self.request("GET", f"/volumes/{volume_id}?compress={int(self.compress)}")
            vol = codec.decode(data)
        else:
            _, headers, data = self.request("GET", f"/volumes/{volume_id}?compress={int(self.compress)}&crop=1")
            offset = [int(v) for v in headers["X-Petar-Offset"].split(",")]
            shape = [int(v) for v in headers["X-Petar-Shape"].split(",")]
            vol = codec.embed(codec.decode(data), offset, shape, like if like is not None and
                              tuple(like.shape) == tuple(shape) else None)
        with self._lock:
            self._ids[vol] = (codec.fingerprint(vol), volume_id)
        return vol

    def forget(self, volume) -> None:
        """Drop the client's memory of a volume (the next call uploads it again)."""
        with self._lock:
            if isinstance(volume, Volume):
                self._ids.pop(volume, None)
            else:
                self._files = {k: v for k, v in self._files.items() if k[0] != str(Path(volume).resolve())}

    def ref(self, volume, role: str = "volume", force: bool = False) -> dict | None:
        """The server reference for a Volume, a file path or a ready reference dict; uploads when needed."""
        if volume is None:
            return None
        if isinstance(volume, dict):
            return volume
        if isinstance(volume, Volume):
            fp = codec.fingerprint(volume)
            with self._lock:
                hit = self._ids.get(volume)
            if hit is not None and hit[0] == fp and not force:
                return {"volume_id": hit[1]}
            vid = self.upload(volume)
            with self._lock:
                self._ids[volume] = (fp, vid)
            return {"volume_id": vid}
        if isinstance(volume, (str, os.PathLike)):
            path = Path(volume).expanduser()
            try:
                st = path.stat()
            except OSError:
                raise InputError(f"file not found: {path}") from None
            key = (str(path.resolve()), st.st_mtime_ns, st.st_size, role)
            with self._lock:
                vid = self._files.get(key)
            if vid is None or force:
                from ..io import read_pet, read_volume

                vol = read_pet(path) if role == "pet" else read_volume(path)
                vid = self.upload(vol)
                with self._lock:
                    self._files[key] = vid
            return {"volume_id": vid}
        raise InputError(f"{role}: give a petar.Volume, an image file path or a server reference, not "
                         f"{type(volume).__name__}")

    def _with_volumes(self, volumes: dict, call):
        """call(refs) with every volume referenced; when the server lost one, upload again and retry once."""
        refs = {k: self.ref(v, k) for k, v in volumes.items()}
        for _ in range(len(volumes)):
            try:
                return call(refs)
            except _VolumeMissing as exc:
                lost = [k for k, r in refs.items() if r is not None and r.get("volume_id") == exc.volume_id
                        and not isinstance(volumes[k], dict)]
                if not lost:
                    raise
                for k in lost:
                    refs[k] = self.ref(volumes[k], k, force=True)
        return call(refs)

    # ---- reader studies --------------------------------------------------------------------------------------
    def study_session(self, db: str, reader: str):
        """A reader session on a study database on the server (a path inside its --data-root); same methods as
        `petar.study.ReaderSession` (next_item, item_at, rate, saved, progress) plus close()."""
        from .study_client import RemoteReaderSession

        return RemoteReaderSession(self, db, reader)

    # ---- engines ---------------------------------------------------------------------------------------------
    def measure(self, pet, mask, label: int | None = None, ct=None, **kw) -> dict:
        """The Measurement JSON (as `petar measure --json`): {"suv_type", "units", "lesions": [...]}."""
        def call(refs):
            body = {"pet": refs["pet"], "mask": refs["mask"], **kw}
            if refs["ct"] is not None:
                body["ct"] = refs["ct"]
            if label is not None:
                body["label"] = label
            return self._json("POST", "/measure", body)

        return self._with_volumes({"pet": pet, "mask": mask, "ct": ct}, call)

    def segment(self, pet, point, space: str = "ras", method: str = "percent", **kw):
        """(mask Volume, {"segmentation", "lesion", "mask"}) for a click; options as petar.click_segment."""
        point = [float(v) for v in np.asarray(point, dtype=float).reshape(-1)]

        def call(refs):
            return self._json("POST", "/segment", {"pet": refs["pet"], "point": point, "space": space,
                                                   "method": method, **kw})

        doc = self._with_volumes({"pet": pet}, call)
        like = pet if isinstance(pet, Volume) else None
        return self.download(doc["mask"]["volume_id"], mask=True, like=like), doc

    def submit(self, kind: str, params: dict) -> str:
        """Queue a job → its id (ServiceBusy with .retry_after when the queue is full)."""
        return self._json("POST", "/jobs", {"kind": kind, "params": params})["job_id"]

    def report(self, pet, ct, mask, label: int | None = None, engine: str = "template", wait: bool = True,
               on_progress=None, timeout: float | None = None, **kw):
        """The report JSON (as `petar report --json`), or the job id when wait=False.

        PETAR-4B options (model, revision, device, dtype, quantize, max_new_tokens, question, ...) pass through;
        `on_progress(job_dict)` sees stage, tokens and the streamed text per label."""
        def call(refs):
            params = {"pet": refs["pet"], "mask": refs["mask"], "engine": engine, **kw}
            if refs["ct"] is not None:
                params["ct"] = refs["ct"]
            if label is not None:
                params["label"] = label
            return self.submit("report", params)

        job_id = self._with_volumes({"pet": pet, "ct": ct, "mask": mask}, call)
        return self.wait(job_id, timeout, on_progress) if wait else job_id

    def ground(self, text: str, pet, ct=None, engine: str = "rule", wait: bool = True, on_progress=None,
               timeout: float | None = None, **kw):
        """(grounding JSON, mask Volume or None), or the job id when wait=False (then `ground_result`)."""
        def call(refs):
            params = {"text": text, "pet": refs["pet"], "engine": engine, **kw}
            if refs["ct"] is not None:
                params["ct"] = refs["ct"]
            return self.submit("ground", params)

        job_id = self._with_volumes({"pet": pet, "ct": ct}, call)
        if not wait:
            return job_id
        return self.ground_result(self.wait(job_id, timeout, on_progress), like=pet if isinstance(pet, Volume) else None)

    def ground_result(self, result: dict, like: Volume | None = None):
        """(result, mask Volume or None) for a finished ground job's result (mask rebuilt on `like`'s grid)."""
        mask = self.download(result["mask"]["volume_id"], mask=True, like=like) if result.get("mask") else None
        return result, mask

    # ---- jobs ------------------------------------------------------------------------------------------------
    def progress(self, job_id: str, since: int | None = None, wait_s: float = 0.0) -> dict:
        """The job document: status, stage, tokens, text (per label), result, error."""
        query = f"?since={since}&wait={wait_s:g}" if since is not None else ""
        return self._json("GET", f"/jobs/{job_id}{query}", timeout=self.timeout + wait_s)

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def wait(self, job_id: str, timeout: float | None = None, on_progress=None, poll_s: float = 2.0,
             should_stop=None) -> dict:
        """Block until the job ends → its result; raises its error (same classes as sync calls), JobCancelled,
        or ServiceError on timeout (the job keeps running: cancel it if it is no longer wanted).
        `should_stop()` true → the job is cancelled on the server and waiting goes on until it confirms."""
        deadline = None if timeout is None else time.monotonic() + timeout
        version = -1
        cancel_sent = False
        while True:
            left = poll_s if deadline is None else min(poll_s, max(0.0, deadline - time.monotonic()))
            doc = self.progress(job_id, since=version, wait_s=left)
            if doc["version"] != version:
                version = doc["version"]
                if on_progress is not None:
                    on_progress(doc)
            if doc["status"] == "done":
                return doc["result"]
            if doc["status"] == "failed":
                raise error_from(None, doc.get("error") or {})
            if doc["status"] == "cancelled":
                raise JobCancelled("the job was cancelled")
            if should_stop is not None and not cancel_sent and should_stop():
                self.cancel(job_id)
                cancel_sent = True
            if deadline is not None and time.monotonic() >= deadline:
                raise ServiceError(f"job {job_id[:8]}… still {doc['status']} after {timeout:g} s")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r}, token={'set' if self.token else 'none'})"
