"""What a report engine returns: findings per lesion with the measurements their numbers came from."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..lesion.measure import LesionMeasurement


@dataclass
class Finding:
    label: int
    text: str
    site: str
    region: str                 # head_neck | chest | abdomen_pelvis | unknown
    laterality: str             # left | right | midline
    region_source: str          # "ct" or "none"
    measurement: LesionMeasurement

    def to_dict(self) -> dict:
        return {"label": self.label, "text": self.text, "site": self.site, "region": self.region,
                "laterality": self.laterality, "region_source": self.region_source,
                "measurement": self.measurement.to_dict()}


@dataclass
class ReportResult:
    engine: str
    findings: list[Finding]
    suv_type: str = "bw"
    slice_origin: str = "superior"
    info: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(f"{f.label}. {f.text}" for f in self.findings)

    def to_dict(self) -> dict:
        return {"engine": self.engine, "suv_type": self.suv_type, "slice_origin": self.slice_origin,
                "findings": [f.to_dict() for f in self.findings], "text": self.text, **self.info}
