"""Jobs for long model work: one worker thread, a bounded queue, progress, results, cancel.

All model work (loading, vision, generation) runs on ONE worker thread, so a GPU holds one model copy and one job
at a time (CUDA state and cuDNN caches stay warm on that thread). A job's life: queued → running → done | failed |
cancelled. Progress: `stage`, `tokens` (generated so far, all lesions), `text` ({label: streamed text}) and a
`version` counter that increases on every change (clients long-poll on it). Cancel stops a queued job at once and a
running PETAR-4B generation between two tokens (`should_stop`); engines without a token loop finish their step and
the job is then reported cancelled with no result. A job that raises never stops the worker: the error becomes the
job's `error` ({"error", "exit_code", "type"}); a GPU out-of-memory error arrives as DeviceMemoryError (exit 2) whose
message says what to change. Finished jobs are kept for inspection (the newest `keep` of them).
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid

from ..errors import Cancelled, PetarError

log = logging.getLogger("petar.service")
FINAL = ("done", "failed", "cancelled")


class QueueFull(Exception):
    """The bounded queue has no room: the HTTP layer answers 503 with Retry-After."""

    def __init__(self, retry_after: int):
        super().__init__(f"the job queue is full: retry in {retry_after} s")
        self.retry_after = retry_after


def error_document(exc: BaseException) -> dict:
    """One-line error for clients; internal errors keep their type but no traceback."""
    if isinstance(exc, PetarError):
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                "exit_code": exc.exit_code, "type": type(exc).__name__}
    return {"error": f"internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            "exit_code": 1, "type": "InternalError"}


class Job:
    def __init__(self, kind: str, fn):
        self.id = uuid.uuid4().hex
        self.kind = kind
        self.fn = fn                        # fn(job) -> result dict
        self.status = "queued"
        self.stage = "queued"
        self.tokens = 0
        self.fraction = None                # 0..1 when the engine can tell (contextual grounding windows)
        self.text: dict[str, str] = {}
        self.result = None
        self.error = None
        self.version = 0
        self.created = time.monotonic()
        self.started = None
        self.finished = None
        self.cancel_requested = threading.Event()
        self.cond = threading.Condition()

    # called from the worker (engines' callbacks)
    def update(self, **fields) -> None:
        with self.cond:
            for k, v in fields.items():
                setattr(self, k, v)
            self.version += 1
            self.cond.notify_all()

    def on_token(self, label, token_id, text_so_far) -> None:
        with self.cond:
            self.tokens += 1
            self.text[str(label)] = text_so_far
            self.stage = "generating"
            self.version += 1
            self.cond.notify_all()

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set()

    def wait_change(self, since: int, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.version > since or self.status in FINAL, timeout=max(0.0, timeout))

    def to_dict(self) -> dict:
        with self.cond:
            now = time.monotonic()
            return {"job_id": self.id, "kind": self.kind, "status": self.status, "stage": self.stage,
                    "tokens": self.tokens, "fraction": self.fraction, "text": dict(self.text),
                    "version": self.version,
                    "queued_s": round((self.started or now) - self.created, 3),
                    "elapsed_s": round((self.finished or now) - self.started, 3) if self.started else 0.0,
                    "result": self.result, "error": self.error}


class JobManager:
    """One worker thread; `queue_size` jobs may wait behind the running one."""

    def __init__(self, queue_size: int = 8, keep: int = 256):
        self.queue_size = max(1, int(queue_size))
        self._queue: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep
        self._running: Job | None = None
        self._stop = threading.Event()
        self._durations: collections.deque = collections.deque(maxlen=20)
        self._thread = threading.Thread(target=self._work, name="petar-model-worker", daemon=True)
        self._thread.start()

    # ---- API ----------------------------------------------------------------------------------------------------
    def submit(self, kind: str, fn) -> Job:
        job = Job(kind, fn)
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(self.retry_after()) from None
            self._jobs[job.id] = job
            self._trim()
        log.info("job queued kind=%s queue=%d", kind, self._queue.qsize())
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel_requested.set()
        with job.cond:
            if job.status == "queued":
                job.status, job.stage, job.finished = "cancelled", "cancelled", time.monotonic()
                job.version += 1
                job.cond.notify_all()
        return job

    def run_on_worker(self, fn, timeout: float | None = None):
        """Run fn() on the model thread (e.g. --preload) outside the queue bound; returns its result or raises."""
        box: dict = {}
        done = threading.Event()

        def task(_job):
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                box["error"] = exc
            finally:
                done.set()
            return None

        job = Job("internal", task)
        self._queue.put(job)           # blocking put: internal work is never refused
        done.wait(timeout)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def stats(self) -> dict:
        with self._lock:
            running = self._running
            return {"queued": self._queue.qsize(), "queue_size": self.queue_size,
                    "running": running.kind if running else None, "jobs_kept": len(self._jobs)}

    def retry_after(self) -> int:
        mean = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return int(min(300, max(1, round(mean * (self._queue.qsize() + 1) / 2))))

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.status not in FINAL:
                self.cancel(job.id)
        self._queue.put(None)

    # ---- worker -------------------------------------------------------------------------------------------------
    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.status in FINAL]
        for job in finished[:max(0, len(finished) - self._keep)]:
            self._jobs.pop(job.id, None)

    def _work(self) -> None:
        while not self._stop.is_set():
            job = self._queue.get()
            if job is None:
                return
            if job.status != "queued":          # cancelled while waiting
                continue
            with self._lock:
                self._running = job
            job.update(status="running", stage="starting", started=time.monotonic())
            t = time.perf_counter()
            try:
                result = job.fn(job)
                if job.cancel_requested.is_set():
                    job.update(status="cancelled", stage="cancelled", finished=time.monotonic())
                else:
                    job.update(status="done", stage="done", result=result, finished=time.monotonic())
            except Cancelled:
                job.update(status="cancelled", stage="cancelled", finished=time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - one failing job never stops the worker
                err = error_document(exc)
                job.update(status="failed", stage="failed", error=err, finished=time.monotonic())
                # no message text in the log: it may name files; kind, type and exit code only
                log.warning("job failed kind=%s type=%s exit_code=%s", job.kind, err["type"], err["exit_code"])
                if not isinstance(exc, Exception):   # KeyboardInterrupt/SystemExit: stop after recording it
                    raise
            finally:
                dt = time.perf_counter() - t
                if job.kind != "internal":
                    self._durations.append(dt)
                    log.info("job finished kind=%s status=%s %.1f ms tokens=%d", job.kind, job.status, dt * 1000,
                             job.tokens)
                with self._lock:
                    self._running = None
                    self._trim()
