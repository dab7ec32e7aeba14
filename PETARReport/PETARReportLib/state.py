"""The Generate/Localize <-> Cancel state machine: idle -> starting service -> running -> cancelling -> idle."""
from __future__ import annotations

import enum


class RunState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting service"
    RUNNING = "running"
    CANCELLING = "cancelling"


_ALLOWED = {
    RunState.IDLE: {RunState.STARTING, RunState.RUNNING},
    RunState.STARTING: {RunState.RUNNING, RunState.CANCELLING, RunState.IDLE},
    RunState.RUNNING: {RunState.CANCELLING, RunState.IDLE},
    RunState.CANCELLING: {RunState.IDLE},
}


class StateMachine:
    """Holds the run state; `listeners` are called with the new state after every change.

    The button shows `action_text` (e.g. "Generate") when idle and "Cancel" otherwise; it is disabled while
    cancelling. Any state may go back to IDLE through `finish()` (a result, an error or a confirmed cancel).
    """

    def __init__(self, action_text: str = "Generate"):
        self.action_text = action_text
        self.state = RunState.IDLE
        self.listeners = []

    def _go(self, new: RunState) -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"cannot go from {self.state.value} to {new.value}")
        self.state = new
        for listener in list(self.listeners):
            listener(new)

    @property
    def busy(self) -> bool:
        return self.state is not RunState.IDLE

    @property
    def button_text(self) -> str:
        return {RunState.IDLE: self.action_text, RunState.CANCELLING: "Cancelling…"}.get(self.state, "Cancel")

    @property
    def button_enabled(self) -> bool:
        return self.state is not RunState.CANCELLING

    def start(self, needs_service_start: bool) -> None:
        self._go(RunState.STARTING if needs_service_start else RunState.RUNNING)

    def service_ready(self) -> None:
        if self.state is RunState.STARTING:
            self._go(RunState.RUNNING)

    def cancel(self) -> bool:
        """Ask to cancel; False when there is nothing to cancel (idle or already cancelling)."""
        if self.state in (RunState.STARTING, RunState.RUNNING):
            self._go(RunState.CANCELLING)
            return True
        return False

    def finish(self) -> None:
        if self.state is not RunState.IDLE:
            self._go(RunState.IDLE)

    def click(self) -> str:
        """What a click on the action button means now: "start", "cancel" or "ignore"."""
        if self.state is RunState.IDLE:
            return "start"
        return "cancel" if self.state in (RunState.STARTING, RunState.RUNNING) else "ignore"
