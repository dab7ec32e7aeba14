"""`petar.ground(text, pet, ct=None, engine="rule"|"contextual", ...)`: a typed finding → its lesion."""
from __future__ import annotations

import threading

import numpy as np

from ..errors import InputError, ModelMissingError
from ..io.images import validate_pet
from ..lesion.measure import measure
from ..volume import Volume
from .result import GroundingResult

ENGINES = ("rule", "contextual")
_MODELS: dict = {}
_LOCK = threading.Lock()


def _contextual(model_dir, device):
    from .contextual import load_contextual

    key = (str(model_dir), device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_contextual(model_dir, device=device)
        return _MODELS[key]


def ground(text: str, pet: Volume, ct: Volume | None = None, engine: str = "rule", model=None,
           slice_origin: str = "superior", device: str = "auto", on_progress=None, should_stop=None,
           **kw) -> GroundingResult:
    """Find the lesion a report sentence describes.

    rule: exact when the text carries SUVmax and axial slice (PETARSeg weak-label algorithm); options
    `suv_tolerance` (0.1), `max_candidates`. contextual: a ConTEXTual Net 3D checkpoint folder (`model`, from
    `petar train-grounding`), PET + CT. on_progress(fraction) / should_stop() follow the contextual model's
    sliding windows (stopping raises `petar.errors.Cancelled`); the rule engine takes well under a second.
    """
    from .parser import parse_finding

    if engine not in ENGINES:
        raise InputError(f"unknown grounding engine {engine!r}: use rule or contextual")
    parsed = parse_finding(text)
    pet = validate_pet(pet)
    if engine == "rule":
        from .rule import ground_rule

        return ground_rule(parsed, pet, slice_origin=slice_origin, **kw)
    if kw:
        raise InputError(f"the contextual engine takes no option(s) {', '.join(sorted(kw))}")
    if model is None:
        raise ModelMissingError("the contextual engine needs a checkpoint folder (--model DIR): train one with "
                                "`petar train-grounding`")
    if parsed.negative:
        return GroundingResult(parsed, "contextual", "not_found",
                               message="the sentence is a negative finding: it describes no lesion to segment")
    pred = _contextual(model, device).predict(pet, ct, text, on_progress=on_progress, should_stop=should_stop)
    mask = Volume.from_array((pred.mask.array > 0).astype(np.uint8), like=pet)
    if not mask.array.any():
        return GroundingResult(parsed, "contextual", "not_found",
                               message="the model found no region above probability 0.5 for this text",
                               info={"slice_origin": slice_origin})
    (lesion,) = measure(pet, mask, slice_origin=slice_origin)
    notes = [f"mean probability {pred.mean_probability:.2f}"]
    if parsed.suv_max is not None and abs(lesion.suv_max - parsed.suv_max) > 0.2:
        notes.append(f"its SUVmax {lesion.suv_max:.2f} differs from the text's {parsed.suv_max:g}: check it")
    if parsed.axial_slice is not None and parsed.axial_slice != lesion.axial_slice:
        notes.append(f"its hottest voxel is on axial image {lesion.axial_slice}, the text says {parsed.axial_slice}")
    return GroundingResult(parsed, "contextual", "found", mask, lesion, [], "; ".join(notes),
                           {"slice_origin": slice_origin})
