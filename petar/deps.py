"""Optional heavy dependencies: clear exit-3 messages instead of import tracebacks.

A trap worth naming: `dynamic-network-architectures` depends on timm, which pulls a CUDA-only torchvision build;
once that is installed, transformers imports it and fails ("operator torchvision::nms does not exist"). petar never
uses timm or torchvision, so the README installs dynamic-network-architectures with --no-deps.
"""
from __future__ import annotations

import importlib.util

from .errors import ModelMissingError

_TORCHVISION_FIX = ("a torchvision build that does not match this torch is installed (timm pulls it in): run "
                    "`pip uninstall -y torchvision timm` — petar needs neither")


def _importable(module: str) -> bool:
    """find_spec without importing; a broken or blocked installation counts as missing."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(modules, extra: str) -> None:
    """ModelMissingError (exit 3) naming the missing packages and the install command for `extra`."""
    missing = [m for m in modules if not _importable(m)]
    if missing:
        gpu = " (GPU: see README)" if extra == "model" else ""
        raise ModelMissingError(f"this needs {', '.join(missing)}: pip install -c constraints.txt -e '.[{extra}]'"
                                f"{gpu}")


def import_transformers():
    """`import transformers` with its model classes importable, or ModelMissingError saying how to fix it."""
    require(("torch", "transformers"), "model")
    try:
        import transformers
        from transformers import PreTrainedModel  # noqa: F401  (forces the torch side, where torchvision bites)
    except RuntimeError as exc:
        if "torchvision" in str(exc):
            raise ModelMissingError(_TORCHVISION_FIX) from None
        raise
    return transformers
