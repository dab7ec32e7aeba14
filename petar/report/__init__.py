"""Findings: `petar.report(pet, ct, mask, ...)` → ReportResult.

`petar.report` is both this module and callable (DESIGN.md §3 names `petar.report(...)` and, in a later issue,
`petar.report.petar_views(...)`), so the module's class is swapped for a callable one below.
Engines: "template" (measurements only, no weights). Model engines import torch lazily in their own modules.
"""
from __future__ import annotations

import sys
import types

from ..errors import InputError
from ..io.grid import labels_onto_grid, resample_like
from ..lesion.measure import measure
from ..volume import Volume
from .result import Finding, ReportResult
from .template import template_findings

ENGINES = ("template",)


def report(pet: Volume, ct: Volume | None, mask: Volume, label: int | None = None, engine: str = "template",
           model=None, suv_type: str = "bw", slice_origin: str = "superior", **kw) -> ReportResult:
    """One finding per lesion label of `mask` (or only `label`), numbers measured from the mask.

    `ct` may be None for the template engine (the region is then not estimated); a CT or mask on another grid is
    resampled onto the PET grid when both cover the same space.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown report engine {engine!r}: available here: {', '.join(ENGINES)}")
    if kw:
        raise InputError(f"the {engine} engine takes no option(s) {', '.join(sorted(kw))}")
    mask = labels_onto_grid(mask, pet)
    if ct is not None and not ct.same_grid(pet):
        ct = resample_like(ct, pet, default=-1000.0)
    measurements = measure(pet, mask, label=label, slice_origin=slice_origin)
    findings = template_findings(pet, ct, measurements, suv_type)
    return ReportResult("template", findings, suv_type=suv_type, slice_origin=slice_origin)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> ReportResult:
        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["ENGINES", "Finding", "ReportResult", "report"]
