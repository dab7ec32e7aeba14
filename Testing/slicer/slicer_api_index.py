"""Name sets from Testing/data/slicer_api/slicer_api.json (Slicer 5.12.3 API index) for the static checks."""
from __future__ import annotations

import functools
import json
from pathlib import Path

API_JSON = Path(__file__).resolve().parents[1] / "data" / "slicer_api" / "slicer_api.json"


@functools.lru_cache(maxsize=1)
def api() -> dict:
    return json.loads(API_JSON.read_text(encoding="utf-8"))


def _flatten(obj) -> set:
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set().union(*(_flatten(v) for v in obj.values())) if obj else set()
    if isinstance(obj, (list, tuple)):
        return set().union(*(_flatten(v) for v in obj)) if obj else set()
    return set()


def vtk_object_methods() -> set:
    raw = api()["vtk"]["vtkObject_methods"]
    return {m if isinstance(m, str) else m.get("name", "") for m in raw}


@functools.lru_cache(maxsize=None)
def vtk_members(cls: str) -> set:
    """Methods (own + inherited + vtkObject) and enum values of a Slicer VTK class."""
    rec = api()["vtk"]["classes"][cls]
    names = set(rec.get("methods", {})) | set(rec.get("static_methods", []))
    for inherited in rec.get("inherited", {}).values():
        names |= set(inherited)
    names |= _flatten(rec.get("enums", {}))
    names |= set(rec.get("all_method_names", []))
    return names | vtk_object_methods()


@functools.lru_cache(maxsize=1)
def all_vtk_method_names() -> set:
    out = set()
    for cls in api()["vtk"]["classes"]:
        out |= vtk_members(cls)
    return out


@functools.lru_cache(maxsize=None)
def qt_members(cls: str) -> set:
    """Properties, signals, slots, invokables and decorator methods of a scanned Slicer/CTK QObject class."""
    rec = api()["qt"]["classes"][cls]
    names = set()
    for key in ("properties", "signals", "public_slots", "invokable_methods", "python_decorator_methods"):
        names |= set(rec.get(key) or {})
    for inherited in (rec.get("inherited") or {}).values():
        names |= _flatten(inherited) if not isinstance(inherited, dict) else set().union(
            *(set(v) for v in inherited.values())) if inherited else set()
    for ancestor in rec.get("ancestors", []):
        if ancestor in api()["qt"]["classes"] and ancestor != cls:
            names |= qt_members(ancestor)
    return names


def python_names(module: str) -> set:
    rec = api()["python"][module]
    if module == "slicer.parameterNodeWrapper":
        return set(rec["exports"])
    return set(rec.get("functions", {})) | set(rec.get("classes", {})) | set(rec.get("module_variables", []))
