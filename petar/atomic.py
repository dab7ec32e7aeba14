"""Atomic output: write to a temp file beside the target, then `os.replace` — no partial file is ever visible.

A crash, a full disk or a bad input half-way leaves the previous file (or nothing) in place, never a truncated one
that a later step (or a physician) could take for a result.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

_MULTI_SUFFIXES = (".nii.gz", ".tar.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in _MULTI_SUFFIXES:
        if name.endswith(s):
            return path.name[-len(s):]
    return path.suffix


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path with the same extension in the same folder; rename it to `path` on success.

    On any exception the temporary file is removed and the target is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=_suffix(path), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    """Write text atomically; `path == "-"` writes to stdout."""
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    """JSON with stable formatting (indent 2, UTF-8, trailing newline); `-` means stdout."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
