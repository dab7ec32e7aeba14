"""Service state behind the HTTP layer: the volume store (content-addressed, LRU by bytes), reference resolution
(volume ids, or paths inside an allow-listed data root), and the engines each endpoint and job kind runs.

Kept apart from server.py so the FastAPI/uvicorn layer stays thin; nothing here imports FastAPI.
"""
from __future__ import annotations


import collections
import logging
import re
import secrets
import sys
import threading
import time
from pathlib import Path

from .. import __version__
from ..errors import InputError, ModelMissingError, PetarError
from ..volume import Volume
from . import codec
from .jobs import JobManager, error_document

log = logging.getLogger("petar.service")

DEFAULT_MAX_BODY_MB = 1024
DEFAULT_QUEUE_SIZE = 8
DEFAULT_CACHE_MB = 4096
_ID_SEGMENT = re.compile(r"/[0-9a-f]{16,}")


class VolumeNotFound(PetarError):
    exit_code = 2

    def __init__(self, volume_id: str, message: str):
        super().__init__(message)
        self.volume_id = volume_id


class Forbidden(InputError):
    pass


def _status_for(exc: BaseException) -> int:
    if isinstance(exc, VolumeNotFound):
        return 404
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, ModelMissingError):
        return 424
    return 500


def _error_body(exc: BaseException) -> dict:
    doc = error_document(exc)
    if isinstance(exc, (VolumeNotFound, Forbidden)):
        doc["type"] = type(exc).__name__
    if isinstance(exc, VolumeNotFound):
        doc["volume_id"] = exc.volume_id
    return doc


# ---- volumes --------------------------------------------------------------------------------------------------
class VolumeStore:
    """Content-addressed volumes, least recently used dropped first once over `max_bytes` (the newest stays)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: collections.OrderedDict[str, Volume] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, volume: Volume, derived: bool = False) -> str:
        """Store a volume → its id: the content hash for uploads; a random id for results (`derived`), which
        nobody uploads, so hashing them would only cost time."""
        key = secrets.token_hex(32) if derived else codec.volume_key(volume)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return key
            self._items[key] = volume
            self._bytes += volume.array.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.array.nbytes
        return key

    def get(self, key: str) -> Volume:
        with self._lock:
            vol = self._items.get(str(key))
            if vol is None:
                raise VolumeNotFound(str(key), f"volume {str(key)[:12]}… is not on the server (evicted or never uploaded): "
                                     "upload it again")
            self._items.move_to_end(str(key))
            return vol

    def delete(self, key: str) -> None:
        with self._lock:
            vol = self._items.pop(str(key), None)
            if vol is not None:
                self._bytes -= vol.array.nbytes

    def stats(self) -> dict:
        with self._lock:
            return {"volumes": len(self._items), "bytes": self._bytes, "max_bytes": self.max_bytes}


def describe(key: str, vol: Volume) -> dict:
    return {"volume_id": key, "shape": list(vol.shape), "dtype": vol.array.dtype.name, "spacing": list(vol.spacing),
            "origin": list(vol.origin), "direction": [float(v) for v in vol.direction.ravel()]}


# ---- the service state (engines, jobs, volumes) ------------------------------------------------------------------
_MEASURE_KEYS = {"pet", "mask", "ct", "label", "slice_origin", "suv_type"}
_SEGMENT_KEYS = {"pet", "point", "space", "method", "percent", "threshold", "snap_mm", "max_radius_mm",
                 "max_volume_ml", "min_contrast", "full_connectivity"}
_REPORT_KEYS = {"pet", "ct", "mask", "label", "engine", "suv_type", "slice_origin"}
_PETAR_KEYS = {"model", "revision", "device", "dtype", "quantize", "question", "max_new_tokens", "batch_size",
               "do_sample", "temperature", "top_p", "top_k", "seed"}
_GROUND_KEYS = {"text", "pet", "ct", "engine", "model", "slice_origin", "device", "suv_tolerance", "max_candidates"}


def _check_keys(params: dict, allowed: set, what: str) -> None:
    if not isinstance(params, dict):
        raise InputError(f"{what}: the request body must be a JSON object")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InputError(f"{what} takes no parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


class Service:
    def __init__(self, data_root=None, queue_size=DEFAULT_QUEUE_SIZE, cache_mb=DEFAULT_CACHE_MB, preload=None):
        self.data_root = Path(data_root).expanduser().resolve() if data_root else None
        if self.data_root is not None and not self.data_root.is_dir():
            raise InputError(f"--data-root {data_root}: not a folder")
        self.store = VolumeStore(int(cache_mb * 2 ** 20))
        self.jobs = JobManager(queue_size)
        self.preload = preload
        self.preload_status = None
        self.started = time.time()
        self._device = None
        if preload:
            self._start_preload(preload)

    def _start_preload(self, model) -> None:
        self.preload_status = {"model": str(model), "status": "loading"}

        def load():
            from ..report.petar_engine import guard_oom, load_petar

            try:
                guard_oom(lambda: load_petar(model), "loading the model")
                self.preload_status["status"] = "loaded"
            except Exception as exc:  # noqa: BLE001 - reported in /info, the server keeps serving
                self.preload_status.update(status="failed", error=error_document(exc)["error"])
                log.warning("preload failed type=%s", type(exc).__name__)

        threading.Thread(target=lambda: self.jobs.run_on_worker(load), daemon=True).start()

    # refs ------------------------------------------------------------------------------------------------------
    def _path(self, value) -> Path:
        if self.data_root is None:
            raise Forbidden("server-side paths are off: upload the volume (POST /volumes), or start the server "
                            "with --data-root DIR")
        p = Path(str(value)).expanduser()
        p = (p if p.is_absolute() else self.data_root / p).resolve()
        if p != self.data_root and self.data_root not in p.parents:
            raise Forbidden("the path is outside the server's data root: use a path inside --data-root")
        return p

    def volume(self, ref, role: str, pet: Volume | None = None, required: bool = True) -> Volume | None:
        if ref is None:
            if required:
                raise InputError(f"'{role}' is required: give {{\"volume_id\": ...}} from POST /volumes")
            return None
        if not isinstance(ref, dict) or len(ref) != 1 or not ({"volume_id", "path"} & set(ref)):
            raise InputError(f"'{role}' must be {{\"volume_id\": ID}} or {{\"path\": P}}")
        if "volume_id" in ref:
            return self.store.get(ref["volume_id"])
        from ..io import read_mask, read_pet, read_volume

        path = self._path(ref["path"])
        if role == "pet":
            return read_pet(path)
        if role == "mask" and pet is not None:
            return read_mask(path, pet)
        return read_volume(path)

    # sync engines ----------------------------------------------------------------------------------------------
    def measure(self, p: dict) -> dict:
        from ..lesion import measure, measurement_document

        _check_keys(p, _MEASURE_KEYS, "measure")
        pet = self.volume(p.get("pet"), "pet")
        mask = self.volume(p.get("mask"), "mask", pet)
        ct = self.volume(p.get("ct"), "ct", required=False)
        lesions = measure(pet, mask, label=p.get("label"), slice_origin=p.get("slice_origin", "superior"), ct=ct)
        return measurement_document(lesions, p.get("suv_type", "bw"))

    def segment(self, p: dict) -> dict:
        from ..lesion import click_segment, measure

        _check_keys(p, _SEGMENT_KEYS, "segment")
        pet = self.volume(p.get("pet"), "pet")
        kw = {k: p[k] for k in _SEGMENT_KEYS - {"pet", "point"} if k in p}
        if "point" not in p:
            raise InputError("segment needs 'point': [x, y, z]")
        seg = click_segment(pet, p["point"], **kw)
        (m,) = measure(pet, seg.mask)
        key = self.store.put(seg.mask, derived=True)
        return {"segmentation": seg.to_dict(), "lesion": m.to_dict(), "mask": describe(key, seg.mask)}

    # jobs ------------------------------------------------------------------------------------------------------
    def submit(self, body: dict):
        if not isinstance(body, dict) or set(body) - {"kind", "params"}:
            raise InputError("a job is {\"kind\": \"report\"|\"ground\", \"params\": {...}}")
        kind, params = body.get("kind"), body.get("params") or {}
        if kind == "report":
            fn = self._report_job(params)
        elif kind == "ground":
            fn = self._ground_job(params)
        else:
            raise InputError(f"unknown job kind {kind!r}: use report or ground")
        return self.jobs.submit(kind, fn)

    def _report_job(self, p: dict):
        engine = p.get("engine", "template") if isinstance(p, dict) else None
        if engine not in ("template", "petar"):
            raise InputError(f"unknown report engine {engine!r}: use template or petar")
        _check_keys(p, _REPORT_KEYS | (_PETAR_KEYS if engine == "petar" else set()), f"report ({engine})")
        pet = self.volume(p.get("pet"), "pet")
        mask = self.volume(p.get("mask"), "mask", pet)
        ct = self.volume(p.get("ct"), "ct", required=engine == "petar")
        kw = {k: p[k] for k in ("label", "suv_type", "slice_origin") if k in p}
        model_kw = {k: p[k] for k in _PETAR_KEYS if k in p}
        preload = self.preload

        def run(job):
            from .. import report

            if engine == "petar":
                from ..report.petar_engine import guard_oom, load_petar

                job.update(stage="loading model")
                loaded = guard_oom(lambda: load_petar(model_kw.pop("model", None) or preload,
                                                      model_kw.pop("revision", None),
                                                      model_kw.pop("device", "auto"), model_kw.pop("dtype", "auto"),
                                                      model_kw.pop("quantize", None)), "loading the model")
                job.update(stage="preprocessing")
                result = report(pet, ct, mask, engine="petar", model=loaded, on_token=job.on_token,
                                should_stop=job.should_stop, **kw, **model_kw)
            else:
                job.update(stage="measuring")
                result = report(pet, ct, mask, engine="template", **kw)
            return result.to_dict()

        return run

    def _ground_job(self, p: dict):
        _check_keys(p, _GROUND_KEYS, "ground")
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError("ground needs 'text': the finding sentence")
        pet = self.volume(p.get("pet"), "pet")
        ct = self.volume(p.get("ct"), "ct", required=False)
        kw = {k: p[k] for k in _GROUND_KEYS - {"text", "pet", "ct"} if k in p}
        if kw.get("engine", "rule") == "contextual" and "model" in kw and self.data_root is not None:
            kw["model"] = str(self._path(kw["model"]))

        def run(job):
            from ..grounding import ground

            job.update(stage="grounding")
            res = ground(text, pet, ct, on_progress=lambda f: job.update(fraction=round(f, 4)),
                         should_stop=job.should_stop, **kw)
            doc = res.to_dict()
            doc["mask"] = describe(self.store.put(res.mask, derived=True), res.mask) if res.mask is not None else None
            return doc

        return run

    # info ------------------------------------------------------------------------------------------------------
    def device(self) -> dict:
        if self._device is None:
            import importlib.util

            info = {"torch": None, "cuda": False, "name": "cpu"}
            if importlib.util.find_spec("torch") is not None:
                try:
                    import torch

                    info["torch"] = torch.__version__
                    if torch.cuda.is_available():
                        info.update(cuda=True, name=torch.cuda.get_device_name(0),
                                    memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1))
                except Exception as exc:  # noqa: BLE001 - a broken torch is reported, not fatal
                    info["error"] = f"{type(exc).__name__}"
            self._device = info
        return self._device

    def info(self) -> dict:
        import importlib.metadata as md
        import platform

        versions = {"petar": __version__, "python": platform.python_version()}
        for pkg in ("numpy", "SimpleITK", "torch", "transformers", "fastapi", "uvicorn"):
            try:
                versions[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                versions[pkg] = None
        models = []
        engine = sys.modules.get("petar.report.petar_engine")
        if engine is not None:
            for (path, device, dtype, quantize), m in list(engine._LOADED.items()):
                models.append({"engine": "petar", **engine.model_info(m), "quantize": quantize})
        grounding = sys.modules.get("petar.grounding.api")
        if grounding is not None:
            for (path, device) in list(grounding._MODELS):
                models.append({"engine": "contextual", "model": {"id": Path(path).name}, "device": device})
        return {"petar": __version__, "versions": versions, "device": self.device(), "models": models,
                "preload": self.preload_status, "jobs": self.jobs.stats(), "volumes": self.store.stats(),
                "data_root": self.data_root is not None, "uptime_s": round(time.time() - self.started, 1)}


# ---- ASGI guard: auth, body limit, request log -------------------------------------------------------------------
