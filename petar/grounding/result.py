"""What grounding returns: the parsed text, a status, the lesion mask and its measurement, ranked candidates."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..lesion.measure import LesionMeasurement
from ..volume import Volume

STATUSES = ("found", "ambiguous", "not_found", "needs_model")


@dataclass
class Candidate:
    """One uptake component the text could describe."""

    score: float
    suv_max: float
    axial_slice: int
    hottest_ras: list
    hottest_ijk: list
    slices: list                  # [first, last] axial slice numbers the component covers (report numbering)
    voxels: int
    side: str                     # left | right | midline (of the hottest voxel against the body mid-line)
    reasons: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"score": round(self.score, 4), "suv_max": round(self.suv_max, 3), "axial_slice": self.axial_slice,
                "hottest_ras": [round(float(v), 2) for v in self.hottest_ras], "hottest_ijk": self.hottest_ijk,
                "slices": self.slices, "voxels": self.voxels, "side": self.side, "reasons": self.reasons}


@dataclass
class GroundingResult:
    parsed: object                # ParsedFinding
    engine: str
    status: str
    mask: Volume | None = None    # uint8 0/1 on the PET grid when status == "found"
    lesion: LesionMeasurement | None = None
    candidates: list = field(default_factory=list)
    message: str = ""
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"parsed": self.parsed.to_dict(), "engine": self.engine, "status": self.status,
                "lesion": self.lesion.to_dict() if self.lesion else None,
                "candidates": [c.to_dict() for c in self.candidates], "message": self.message, **self.info}
