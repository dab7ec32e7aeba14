"""The PETAR-4B findings engine: views → model → text → finding with measured numbers.

All lesions of an exam go through the model in one batched pass. Loaded models are kept per process (keyed by folder,
device, dtype and quantisation), so a service or a Slicer session pays the load once. torch and transformers are
imported only here, lazily.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ..errors import DeviceMemoryError
from ..lesion.measure import LesionMeasurement, measure
from ..volume import Volume
from .compose import compose
from .weights import ModelRecord, resolve

log = logging.getLogger("petar.report")
_LOADED: dict = {}
_LOAD_LOCK = threading.Lock()


def _require_model_packages() -> None:
    from ..deps import import_transformers, require

    require(("torch", "transformers", "safetensors", "sentencepiece"), "model")
    import_transformers()


def load_petar(model=None, revision=None, device="auto", dtype="auto", quantize=None):
    """A loaded PetarModel for a folder or a cached hub id (see petar.report.weights); cached per process.

    The returned model carries `.record` (id, revision, sha256 of the pull manifest)."""
    _require_model_packages()
    record: ModelRecord = resolve(model, revision)
    key = (str(record.path.resolve()), device, dtype, quantize)
    with _LOAD_LOCK:
        if key not in _LOADED:
            from .model import load_petar_folder

            t = time.perf_counter()
            loaded = load_petar_folder(record.path, device=device, dtype=dtype, quantize=quantize)
            loaded.record = record
            log.info("loaded PETAR model on %s (%s) in %.1f s", loaded.device, loaded.dtype, time.perf_counter() - t)
            _LOADED[key] = loaded
        return _LOADED[key]


def unload_all() -> None:
    """Drop every cached model (frees GPU memory)."""
    with _LOAD_LOCK:
        _LOADED.clear()


@dataclass
class ModelFinding:
    label: int
    text: str                       # the composed finding (model words, measured numbers)
    raw_text: str
    fields: dict
    replaced: dict
    measurement: LesionMeasurement
    timing_ms: dict
    tokens: int
    token_ids: list = field(default_factory=list, repr=False)
    warnings: list = field(default_factory=list)     # preprocessing notes, e.g. the crop moved to keep the lesion

    def to_dict(self) -> dict:
        return {"label": self.label, "finding": self.text, "raw_text": self.raw_text, "fields": self.fields,
                "replaced": self.replaced, "measurement": self.measurement.to_dict(), "timing_ms": self.timing_ms,
                "tokens": self.tokens, "warnings": self.warnings}


def petar_findings(pet: Volume, ct: Volume, mask: Volume, measurements: list[LesionMeasurement], model,
                   question: str | None = None, max_new_tokens: int = 256, on_token=None, should_stop=None,
                   batch_size: int = 8, **generate_kw) -> list[ModelFinding]:
    """Findings for measured lesions (mask on the PET grid). `on_token(label, token_id, text_so_far)` streams."""
    from .preprocess import petar_views

    views, prep_ms, warnings = [], [], []
    for m in measurements:
        t = time.perf_counter()
        v, info = petar_views(pet, ct, mask, label=m.label, size=tuple(model.image_size), return_info=True)
        views.append(v)
        warnings.append(list(info.get("warnings", [])))
        prep_ms.append((time.perf_counter() - t) * 1000)
    ids = model.prompt_ids(question)
    out: list[ModelFinding] = []
    for start in range(0, len(measurements), max(1, batch_size)):
        chunk = measurements[start:start + batch_size]
        streamed: dict[int, list[int]] = {i: [] for i in range(len(chunk))}

        def token_cb(i, token_id, chunk=chunk, streamed=streamed):
            streamed[i].append(token_id)
            if on_token is not None:
                on_token(chunk[i].label, token_id, model.decode(streamed[i]))

        generated = model.generate_batch(views[start:start + len(chunk)], [ids] * len(chunk),
                                         max_new_tokens=max_new_tokens, on_token=token_cb, should_stop=should_stop,
                                         **generate_kw)
        timing = dict(model.timing)
        for i, (m, new_ids) in enumerate(zip(chunk, generated)):
            raw = model.decode(new_ids)
            composed = compose(raw, m)
            out.append(ModelFinding(
                label=m.label, text=composed.finding, raw_text=raw, fields=composed.fields,
                replaced=composed.replaced, measurement=m, tokens=len(new_ids), token_ids=list(new_ids),
                warnings=warnings[start + i],
                timing_ms={"preprocess": round(prep_ms[start + i], 1), "vision": round(timing.get("vision_ms", 0), 1),
                           "prefill": round(timing.get("prefill_ms", 0), 1),
                           "decode": round(timing.get("decode_ms", 0), 1), "batch_size": len(chunk)}))
    return out


def _oom_message(exc: BaseException, stage: str) -> str:
    import re

    text = str(exc)
    need = re.search(r"Tried to allocate ([\d.]+ \w+)", text)
    free = re.search(r"of which ([\d.]+ \w+) is free", text)
    amounts = (f" (needed {need.group(1)} more" + (f", {free.group(1)} free" if free else "") + ")") if need else ""
    return (f"GPU out of memory while {stage}{amounts}: try --dtype bf16 or fp16, --quantize 4bit, fewer lesions "
            "per batch, or --device cpu")


def guard_oom(fn, stage: str):
    """Run fn(); a CUDA out-of-memory error becomes DeviceMemoryError (exit 2) with what to change."""
    try:
        return fn()
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
        raise DeviceMemoryError(_oom_message(exc, stage)) from None


def model_info(model) -> dict:
    rec = getattr(model, "record", None)
    return {"model": rec.to_dict() if rec else None, "device": str(model.device),
            "dtype": str(model.dtype).replace("torch.", "")}


def report_petar(pet: Volume, ct: Volume, mask: Volume, label=None, model=None, revision=None, device="auto",
                 dtype="auto", quantize=None, slice_origin="superior", **kw):
    """(measurements, findings, info) — used by petar.report(..., engine="petar")."""
    measurements = measure(pet, mask, label=label, slice_origin=slice_origin)
    loaded = model if hasattr(model, "generate_batch") else guard_oom(
        lambda: load_petar(model, revision, device, dtype, quantize), "loading the model")
    findings = guard_oom(lambda: petar_findings(pet, ct, mask, measurements, loaded, **kw), "generating findings")
    return findings, model_info(loaded)
