"""User settings kept across sessions, behind an injectable key/value backend.

Inside Slicer the backend wraps `qt.QSettings` (see PETARReport.py `QSettingsBackend`); tests use `DictBackend`.
QSettings returns strings for values written by other sessions, so every read is coerced to the field's type and
an unreadable value falls back to the default with a logged warning (never silently to something else).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace

PREFIX = "PETAR/"
SERVICE_MODES = ("inprocess", "local", "remote")
REPORT_ENGINES = ("template", "petar")
GROUNDING_ENGINES = ("rule", "contextual")
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")


class DictBackend:
    """In-memory stand-in for QSettings: value(key, default) / setValue(key, value) / remove(key)."""

    def __init__(self, data=None):
        self.data = dict(data or {})

    def value(self, key, default=None):
        return self.data.get(key, default)

    def setValue(self, key, value):
        self.data[key] = value

    def remove(self, key):
        self.data.pop(key, None)


@dataclass
class Settings:
    service_mode: str = "inprocess"     # inprocess (template/rule only) | local (auto-start `petar serve`) | remote
    python_executable: str = ""         # local mode: interpreter with petar[service,model]; "" = Slicer's own
    service_url: str = "http://127.0.0.1:8765"
    service_token: str = ""             # remote mode; stored in the user's Slicer settings file
    report_engine: str = "template"
    model: str = ""                     # PETAR-4B hub id or folder (server side)
    revision: str = ""
    device: str = "auto"
    dtype: str = "auto"
    max_new_tokens: int = 256
    grounding_engine: str = "rule"
    checkpoint: str = ""                # ConTEXTual Net 3D checkpoint folder (server side)

    _CHOICES = {"service_mode": SERVICE_MODES, "report_engine": REPORT_ENGINES, "device": DEVICES,
                "dtype": DTYPES, "grounding_engine": GROUNDING_ENGINES}

    def validate(self) -> tuple[bool, str]:
        """(ok, reason) — the reason says what to change."""
        for name, choices in self._CHOICES.items():
            if getattr(self, name) not in choices:
                return False, f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}"
        if not 1 <= int(self.max_new_tokens) <= 4096:
            return False, f"max new tokens must be 1..4096, not {self.max_new_tokens}"
        if self.service_mode == "remote" and not self.service_url.startswith(("http://", "https://")):
            return False, f"the service URL must start with http:// or https://, not {self.service_url!r}"
        if self.service_mode == "inprocess" and self.report_engine == "petar":
            return False, "the PETAR-4B engine runs in the petar service: choose a local or remote service"
        if self.service_mode == "inprocess" and self.grounding_engine == "contextual":
            return False, "ConTEXTual Net 3D runs in the petar service: choose a local or remote service"
        if self.grounding_engine == "contextual" and not self.checkpoint:
            return False, "ConTEXTual Net 3D needs a checkpoint folder (train one with `petar train-grounding`)"
        return True, ""

    def for_segmentation(self) -> "Settings":
        """A copy for a click segmentation: the same service (mode, Python, URL, token), default engines, so that
        neither `validate()` nor the dependency plan asks for what only a model engine needs."""
        return replace(self, report_engine="template", grounding_engine="rule")

    def report_options(self) -> dict:
        """Engine options for a report job (only those the chosen engine takes)."""
        if self.report_engine != "petar":
            return {}
        opts = {"device": self.device, "dtype": self.dtype, "max_new_tokens": int(self.max_new_tokens)}
        if self.model:
            opts["model"] = self.model
        if self.revision:
            opts["revision"] = self.revision
        return opts

    def grounding_options(self) -> dict:
        if self.grounding_engine != "contextual":
            return {}
        return {"model": self.checkpoint, "device": self.device}

    # ---- persistence -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, backend) -> "Settings":
        out = cls()
        for f in fields(cls):
            raw = backend.value(PREFIX + f.name, None)
            if raw is None:
                continue
            try:
                value = int(raw) if f.type in (int, "int") else str(raw)
            except (TypeError, ValueError):
                logging.warning("PETAR setting %s=%r is unreadable; using %r", f.name, raw, getattr(out, f.name))
                continue
            setattr(out, f.name, value)
        return out

    def save(self, backend) -> None:
        for f in fields(self):
            backend.setValue(PREFIX + f.name, getattr(self, f.name))
