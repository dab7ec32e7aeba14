"""Findings: `petar.report(pet, ct, mask, ...)` → ReportResult.

`petar.report` is both this module and callable (DESIGN.md §3 names `petar.report(...)` and, in a later issue,
`petar.report.petar_views(...)`), so the module's class is swapped for a callable one below.
Engines: "template" (measurements only, no weights) and "petar" (PETAR-4B; torch and transformers are imported
lazily in petar_engine/model/preprocess, so `import petar` stays light).
"""
from __future__ import annotations

import sys
import types

from ..errors import InputError
from ..io.grid import labels_onto_grid, resample_like
from ..io.images import validate_pet
from ..lesion.measure import measure
from ..volume import Volume
from .result import Finding, ReportResult
from .template import template_findings

ENGINES = ("template", "petar")
_PETAR_OPTIONS = {"revision", "device", "dtype", "quantize", "question", "max_new_tokens", "on_token", "should_stop",
                  "batch_size", "do_sample", "temperature", "top_p", "top_k", "seed"}


def report(pet: Volume, ct: Volume | None, mask: Volume, label: int | None = None, engine: str = "template",
           model=None, suv_type: str = "bw", slice_origin: str = "superior", **kw) -> ReportResult:
    """One finding per lesion label of `mask` (or only `label`), numbers measured from the mask.

    `ct` may be None for the template engine (the region is then not estimated); a CT or mask on another grid is
    resampled onto the PET grid when both cover the same space.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown report engine {engine!r}: available here: {', '.join(ENGINES)}")
    allowed = _PETAR_OPTIONS if engine == "petar" else set()
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise InputError(f"the {engine} engine takes no option(s) {', '.join(unknown)}")
    pet = validate_pet(pet)                    # finite, plausibly SUV (not HU, not Bq/mL)
    mask = labels_onto_grid(mask, pet)
    if engine == "petar":
        if ct is None:
            raise InputError("the PETAR-4B engine needs the CT (it reads PET and CT together): give --ct")
        from .petar_engine import report_petar

        findings, info = report_petar(pet, ct, mask, label=label, model=model, slice_origin=slice_origin, **kw)
        return ReportResult("petar", findings, suv_type=suv_type, slice_origin=slice_origin, info=info)
    if ct is not None and not ct.same_grid(pet):
        ct = resample_like(ct, pet, default=-1000.0)
    measurements = measure(pet, mask, label=label, slice_origin=slice_origin)
    findings = template_findings(pet, ct, measurements, suv_type)
    return ReportResult("template", findings, suv_type=suv_type, slice_origin=slice_origin)


def load_petar(model=None, revision=None, device="auto", dtype="auto", quantize=None):
    """Load PETAR-4B (or a compatible lamed_phi3 checkpoint) from a folder or the cache; see petar_engine."""
    from .petar_engine import load_petar as _load

    return _load(model, revision, device, dtype, quantize)


def petar_views(pet, ct, mask, label=None, **kw):
    """The six PETAR-4B inputs exactly as the official preprocessing makes them; see preprocess.py."""
    from .preprocess import petar_views as _views

    return _views(pet, ct, mask, label=label, **kw)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> ReportResult:
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["ENGINES", "Finding", "ReportResult", "load_petar", "petar_views", "report"]
