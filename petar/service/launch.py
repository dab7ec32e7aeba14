"""`launch()`: start a local `petar serve` subprocess (any Python environment, e.g. a CUDA one) and stop it cleanly.

The server binds 127.0.0.1 on a free port, gets a random token, and announces {"url", "pid"} as one JSON line on its
stdout; `launch` waits for GET /health. `--parent-pid` makes the server exit when this process dies (crash, kill),
and each server keeps `$PETAR_HOME/run/serve-<pid>.json`; `launch` removes servers whose parent is gone (a
leftover from a hard kill) before starting a new one. Server logs go to `$PETAR_HOME/run/serve-<pid>.log`
(no patient identifiers are logged). Standard library only.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import PetarError
from .client import Client, ServiceUnavailable


def _run_dir() -> Path:
    from ..report.weights import petar_home

    d = petar_home() / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _alive(pid: int) -> bool:
    from .server import _alive as alive

    return alive(pid)


def _is_petar_server(pid: int) -> bool:
    """Only ever signal a process that is a petar server (a pid may have been reused)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return b"petar" in args and b"serve" in args
    return False          # no /proc (macOS, Windows): never kill on a guess; the server's own watchdog handles it


def cleanup_stale(run_dir: Path | None = None) -> list[int]:
    """Stop servers whose launching parent has died and remove dead pid files; returns the pids stopped."""
    run_dir = run_dir or _run_dir()
    stopped = []
    for f in run_dir.glob("serve-*.json"):
        try:
            rec = json.loads(f.read_text())
            pid, parent = int(rec["pid"]), rec.get("parent_pid")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid):
            with contextlib.suppress(OSError):
                f.unlink()
            continue
        if parent and not _alive(int(parent)) and _is_petar_server(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
    return stopped


class LocalService:
    """A running local server: `.url`, `.token`, `.process`, `.client()`; `stop()` or use it as a context manager."""

    def __init__(self, url: str, token: str, process: subprocess.Popen, log_path: Path | None = None):
        self.url, self.token, self.process, self.log_path = url, token, process, log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **kw) -> Client:
        return Client(self.url, token=self.token, **kw)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate (graceful: running jobs are cancelled), then kill after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self.log_path is not None and self.process.returncode in (0, -signal.SIGTERM):
            with contextlib.suppress(OSError):
                self.log_path.unlink()       # a clean stop leaves nothing; a failure keeps its log
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self) -> str:
        return f"LocalService({self.url!r}, pid={self.pid}, running={self.running()})"


def launch(python_executable: str | None = None, port: int = 0, token: str | None = None,
           startup_timeout: float = 120.0, env: dict | None = None, **server_kw) -> LocalService:
    """Start `python -m petar serve` on 127.0.0.1 and wait until it answers; returns a LocalService.

    server_kw: data_root, max_body_mb, queue_size, cache_mb, preload (the `petar serve` options)."""
    python = python_executable or sys.executable
    token = token or secrets.token_urlsafe(32)
    run_dir = _run_dir()
    cleanup_stale(run_dir)
    cmd = [python, "-m", "petar", "serve", "--host", "127.0.0.1", "--port", str(int(port)),
           "--parent-pid", str(os.getpid())]
    for key, value in server_kw.items():
        if value is None:
            continue
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    child_env = dict(os.environ if env is None else env)
    child_env["PETAR_SERVICE_TOKEN"] = token              # not on the command line: other users can read argv
    log_path = run_dir / f"serve-launch-{os.getpid()}-{int(time.time() * 1000)}.log"
    log_file = open(log_path, "ab")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL,
                                env=child_env, start_new_session=os.name != "nt")
    finally:
        log_file.close()
    first: dict = {}

    def read_announcement():
        line = proc.stdout.readline()
        first["line"] = line
        for _ in iter(proc.stdout.readline, b""):   # keep draining so the server never blocks on a full pipe
            pass

    reader = threading.Thread(target=read_announcement, daemon=True)
    reader.start()
    service = LocalService("", token, proc, log_path)
    deadline = time.monotonic() + startup_timeout
    while "line" not in first:
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    try:
        url = json.loads(first.get("line") or b"{}").get("url")
    except ValueError:
        url = None
    if not url:
        service.stop()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
        raise PetarError(f"the petar service did not start (exit {proc.returncode})"
                         + (f": {tail[0]}" if tail else "") + f"; log: {log_path}")
    service.url = url
    client = Client(url, token=token, timeout=10.0,
                    connect_retry_s=max(1.0, deadline - time.monotonic()))
    try:
        client.health()
    except ServiceUnavailable:
        service.stop()
        raise
    finally:
        client.close()
    return service
