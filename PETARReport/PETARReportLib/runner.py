"""Run engine calls off the main thread; deliver their events on the main thread.

`EngineRunner.start(job)` runs `job(progress, should_stop, set_cancel_hook)` on a worker thread. The worker never
touches Qt or MRML: it only puts events on a queue. The widget calls `poll()` from a `qt.QTimer` on the main
thread; `poll()` drains the queue and emits the signals (`progress`, `finished`, `failed`, `cancelled`), so every
result is applied to the scene on the main thread. Tests call `poll()` directly. `abandon()` (scene close) cancels
the job and forgets it at once: each job has its own stop flag and event queue, so nothing of it reaches the next.

`Signal` is a plain-Python signal (custom PythonQt signals are unreliable in scripted modules).
"""
from __future__ import annotations

import logging
import queue
import threading


class Signal:
    def __init__(self):
        self._slots = []

    def connect(self, slot) -> None:
        self._slots.append(slot)

    def disconnect(self, slot) -> None:
        self._slots.remove(slot)

    def emit(self, *args) -> None:
        for slot in list(self._slots):
            slot(*args)


class Cancelled(Exception):
    """Raised inside a job when it noticed `should_stop()`."""


class _Run:
    """One job's private state: its stop flag, server cancel hook and event queue (so an abandoned job's late
    events can never reach the next job)."""

    def __init__(self):
        self.stop = threading.Event()
        self.hook = None
        self.events = queue.Queue()


class EngineRunner:
    def __init__(self, thread_factory=None):
        self._thread_factory = thread_factory or (lambda target: threading.Thread(target=target, daemon=True))
        self._run = _Run()
        self._thread = None
        self.running = False
        self.progress = Signal()     # (doc: dict)  stage, tokens, text so far
        self.finished = Signal()     # (result)
        self.failed = Signal()       # (exception)
        self.cancelled = Signal()    # ()

    def start(self, job) -> None:
        if self.running:
            raise RuntimeError("a job is already running: cancel it first")
        run = self._run = _Run()
        self.running = True
        events = run.events

        def set_cancel_hook(hook):
            run.hook = hook
            if run.stop.is_set():
                _call_hook(run)

        def work():
            try:
                result = job(lambda doc: events.put(("progress", doc)), run.stop.is_set, set_cancel_hook)
            except Cancelled:
                events.put(("cancelled", None))
            except Exception as exc:  # delivered to the widget, shown in a dialog and logged there
                if run.stop.is_set() and type(exc).__name__ == "JobCancelled":
                    events.put(("cancelled", None))
                else:
                    events.put(("failed", exc))
            else:
                events.put(("cancelled", None) if run.stop.is_set() else ("finished", result))

        self._thread = self._thread_factory(work)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop (a server job is cancelled through its hook). Returns at once; wait for events."""
        run = self._run
        if self.running and not run.stop.is_set():
            run.stop.set()
            threading.Thread(target=_call_hook, args=(run,), daemon=True).start()

    def abandon(self) -> bool:
        """Cancel the job and forget it at once (scene close): its later events are dropped, `running` is False
        now and no signal is emitted for it. True when a job was running."""
        was_running = self.running
        self.cancel()
        self._run = _Run()
        self.running = False
        return was_running

    def poll(self) -> int:
        """Main thread: emit queued events; returns how many were delivered."""
        n = 0
        run = self._run
        while run is self._run:                  # a slot may abandon the job (or start another) mid-drain
            try:
                kind, payload = run.events.get_nowait()
            except queue.Empty:
                return n
            n += 1
            if kind == "progress":
                self.progress.emit(payload)
                continue
            self.running = False
            if kind == "finished":
                self.finished.emit(payload)
            elif kind == "failed":
                self.failed.emit(payload)
            else:
                self.cancelled.emit()
        return n

    def wait(self, timeout: float | None = None) -> None:
        """Block until the worker ends (scripting and self-tests); then call poll()."""
        if self._thread is not None:
            self._thread.join(timeout)


def _call_hook(run) -> None:
    hook = run.hook
    if hook is not None:
        try:
            hook()
        except Exception as exc:  # the job still sees should_stop(); log why the server was not told
            logging.warning("PETAR: cancel request failed: %s", exc)


class ServiceConnector:
    """Which `petar` to call: None (in-process), a remote `Client`, or a local `petar serve` started on demand.

    `client_factory(url, token)` and `launcher(python_executable)` are injected for tests; by default they are
    `petar.service.Client` and `petar.service.launch`. `client()` may block (a local start takes seconds): call it
    from the worker thread, never from the main thread.
    """

    def __init__(self, settings, client_factory=None, launcher=None):
        self.settings = settings
        self._client_factory = client_factory
        self._launcher = launcher
        self._service = None
        self._client = None
        self._key = None
        self._lock = threading.Lock()

    def needs_start(self) -> bool:
        s = self.settings
        return s.service_mode == "local" and (self._service is None or not self._service.running())

    def client(self):
        s = self.settings
        if s.service_mode == "inprocess":
            return None
        with self._lock:
            key = (s.service_mode, s.python_executable, s.service_url, s.service_token)
            if key != self._key:
                self.close()
            if s.service_mode == "remote":
                if self._client is None:
                    factory = self._client_factory or _default_client
                    self._client = factory(s.service_url, s.service_token or None)
            else:
                if self._service is None or not self._service.running():
                    launcher = self._launcher or _default_launch
                    self._service = launcher(s.python_executable or None)
                    self._client = None
                if self._client is None:
                    self._client = self._service.client()
            self._key = key
            return self._client

    def close(self) -> None:
        """Stop a service this connector started (not a remote one) and drop the client."""
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()
        if self._service is not None:
            self._service.stop()
        self._client = self._service = self._key = None


def _default_client(url, token):
    from petar.service import Client

    return Client(url, token=token)


def _default_launch(python_executable):
    from petar.service import launch

    return launch(python_executable=python_executable)
