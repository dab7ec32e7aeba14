"""The job plumbing both module widgets share: action button <-> Cancel, progress bar, status line, scene close.

Slicer-free: the Qt widgets, the QTimer and the error dialog are injected (anything with the same attributes works,
so Testing/slicer drives these classes with plain objects).

* `JobControls` wires a `StateMachine` and an `EngineRunner` to the action button (Generate/Localize <-> Cancel),
  the widgets disabled while busy, a progress bar and a status label. `start(job, on_finished=...)` names what to do
  with that job's result, so one runner serves several kinds of job (localize, accept a candidate; generate, click
  a lesion). Progress documents go through `progress_view(doc) -> (percent or None, label)` (the controls' own, or
  one given to `start` for that job): a percent shows a determinate bar, None an indeterminate (busy) one.
  `reset()` abandons the running job at once (scene close): its result never arrives.
* `ParameterNodeBinding` connects the module's parameter node to the GUI and lets go of it before the scene closes
  (Slicer's template pattern: disconnect on StartCloseEvent, a new node on EndCloseEvent or on entering the module).
"""
from __future__ import annotations

import logging


def _no_view(doc: dict):
    return None, str(doc.get("stage") or "")


class JobControls:
    def __init__(self, state, runner, timer, button, progress_bar, status_label=None, busy_disabled=(),
                 progress_view=None, show_error=None, failure_text="failed: "):
        self.state, self.runner, self.timer = state, runner, timer
        self.button, self.progress_bar, self.status_label = button, progress_bar, status_label
        self.busy_disabled = list(busy_disabled)
        self.progress_view = progress_view or _no_view
        self.show_error = show_error
        self.failure_text = failure_text
        self._job = {}
        state.listeners.append(self.on_state_changed)
        runner.progress.connect(self._on_progress)
        runner.finished.connect(self._on_finished)
        runner.failed.connect(self._on_failed)
        runner.cancelled.connect(self._on_cancelled)

    # ---- button ------------------------------------------------------------------------------------------------
    def click(self) -> bool:
        """The action button was pressed: True when the caller should now start a job (idle); a press while busy
        asks the running job to cancel (False)."""
        action = self.state.click()
        if action == "cancel":
            self.state.cancel()
            self.runner.cancel()
        return action == "start"

    def on_state_changed(self, state=None) -> None:
        busy = self.state.busy
        self.button.text = self.state.button_text
        self.button.enabled = self.state.button_enabled
        for widget in self.busy_disabled:
            widget.enabled = not busy
        self.progress_bar.visible = busy

    # ---- jobs --------------------------------------------------------------------------------------------------
    def start(self, job, needs_service_start=False, on_finished=None, on_progress=None, on_cancelled=None,
              failure_text=None, progress_view=None) -> None:
        """Run `job` off the main thread; its callbacks run on the main thread (timer -> runner.poll)."""
        self._job = {"finished": on_finished, "progress": on_progress, "cancelled": on_cancelled,
                     "failure_text": failure_text, "view": progress_view or self.progress_view}
        self.state.start(needs_service_start)
        self.show_progress(*self._job["view"]({"stage": "starting"}))
        try:
            self.runner.start(job)
        except Exception:
            self.state.finish()
            raise
        self.timer.start()

    def show_progress(self, percent, label=None) -> None:
        """A determinate bar at `percent` (0..100), or an indeterminate one for None; `label` in the status line."""
        if percent is None:
            self.progress_bar.minimum, self.progress_bar.maximum = 0, 0
        else:
            self.progress_bar.minimum, self.progress_bar.maximum = 0, 100
            self.progress_bar.value = max(0, min(100, int(percent)))
        if label is not None:
            self.set_status(label)

    def set_status(self, text: str) -> None:
        if self.status_label is not None:
            self.status_label.text = text

    def fail(self, exc, failure_text=None) -> None:
        """Show an error (from a job, or raised while preparing one) and go back to idle."""
        self._end()
        self.set_status("failed")
        text = failure_text or self.failure_text
        logging.error("PETAR: %s%s", text, exc)
        if self.show_error is not None:
            self.show_error(f"{text}{exc}")

    def reset(self) -> None:
        """Scene close: abandon the running job (cancelled on the server; its result is dropped), go idle, clear."""
        self.runner.abandon()
        self._end()
        self.show_progress(0, "")

    def _end(self) -> dict:
        job, self._job = self._job, {}
        self.timer.stop()
        self.state.finish()
        return job

    def _on_progress(self, doc) -> None:
        self.state.service_ready()
        self.show_progress(*self._job.get("view", self.progress_view)(doc))
        callback = self._job.get("progress")
        if callback is not None:
            callback(doc)

    def _on_finished(self, result) -> None:
        job = self._end()
        self.show_progress(100, "done")
        if job.get("finished") is not None:
            job["finished"](result)

    def _on_failed(self, exc) -> None:
        failure_text = self._job.get("failure_text")
        self.fail(exc, failure_text)

    def _on_cancelled(self) -> None:
        job = self._end()
        self.set_status("cancelled")
        if job.get("cancelled") is not None:
            job["cancelled"]()


class ParameterNodeBinding:
    """The module's parameter node connected to its GUI; `get_node()` returns the (wrapped) node, creating it when
    the scene has none; `prepare(node)` fills defaults before the GUI is connected."""

    def __init__(self, get_node, ui, prepare=None):
        self.get_node, self.ui, self.prepare = get_node, ui, prepare
        self.node = None
        self._tag = None

    def connect(self):
        """Connect (once) and return the node; a no-op while connected."""
        if self.node is None:
            node = self.get_node()
            if self.prepare is not None:
                self.prepare(node)
            self._tag = node.connectGui(self.ui)
            self.node = node
        return self.node

    def disconnect(self) -> None:
        """Let go of the node (before the scene closes, or when the module is left)."""
        if self.node is not None:
            self.node.disconnectGui(self._tag)
        self.node = self._tag = None
