"""Plain-text tables for terminal output (no dependency)."""
from __future__ import annotations


def render(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """Fixed-width table; columns in `right` (default: all but the first two) are right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = set(range(2, len(headers))) if right is None else right

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def measurement_rows(lesions) -> tuple[list[str], list[list]]:
    """Headers and rows for LesionMeasurement objects."""
    headers = ["label", "slice", "SUVmax", "SUVpeak", "SUVmean", "MTV mL", "TLG", "long mm", "short mm", "parts"]
    rows = [[m.label, m.axial_slice, f"{m.suv_max:.2f}", f"{m.suv_peak:.2f}", f"{m.suv_mean:.2f}", f"{m.mtv_ml:.2f}",
             f"{m.tlg:.1f}", f"{m.diameter_long_mm:.1f}", f"{m.diameter_short_mm:.1f}", m.components]
            for m in lesions]
    return headers, rows
