"""SUV from PET DICOM headers, following the QIBA "happy path" (as Slicer's PET DICOM extension does).

SUVbw = C[Bq/mL] · W[g] / (D[Bq] · 2^(−Δt/T½)): D RadionuclideTotalDose, T½ RadionuclideHalfLife,
W PatientWeight, Δt = scan reference time − injection time. Why each rule:
- Injection time: RadiopharmaceuticalStartDateTime (0018,1078) when present (it carries the date), else
  RadiopharmaceuticalStartTime (0018,1072); both present and more than 1 s apart is a contradiction, not a choice.
- Scan reference time (QIBA): SeriesDate/SeriesTime when not after the earliest AcquisitionDate/AcquisitionTime of the
  series, else that earliest acquisition time (a re-reconstruction gets a later SeriesTime than its acquisition).
- When the injection or the scan has no date, both are taken as the same day and, if the scan then precedes the
  injection, it is taken to be the next day (injection before midnight, scan after): the gap stays under 24 h.
  With full datetimes, they are used as they are.
- Δt < 0, or Δt > max(24 h, 5 half-lives), is an error: it means wrong dates or times (the 5-half-life allowance
  only matters for long-lived tracers such as Zr-89, imaged days after injection).
- DecayCorrection (0054,1102) START: images are decay-corrected to the scan start, so the dose is decayed to it;
  ADMIN: images are corrected to the administration time, factor = W/D. Anything else is refused.
- Units (0054,1001) must be BQML; Units GML means the images already hold SUVbw (g/mL): `read_dicom_pet` returns them
  unchanged for suv_type "bw" and refuses other types. CorrectedImage (0028,0051) must list ATTN and DECY.

Factor units: bw, lbm and ibw give g/mL (mass in grams); bsa gives cm²/mL (Du Bois BSA in cm², the usual SUVbsa
convention). Messages name tags and the CLI flag that fixes them, never patient names, IDs or birth dates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import reduce

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword

from ..errors import InputError
from ..volume import Volume
from .dicom import read_dicom_volume

SUV_TYPES = ("bw", "lbm", "bsa", "ibw")
_OVERRIDES = ("weight", "height", "sex", "dose", "injection_time", "scan_time", "half_life")
_NO_DATE = date(1900, 1, 1)   # placeholder day for times that come without a date (only differences matter)
_DAY = timedelta(days=1)
_FLAG = {"weight": "--weight KG", "height": "--height M", "sex": "--sex M|F", "dose": "--dose MBQ",
         "half_life": "--half-life SECONDS", "injection_time": "--injection-time HH:MM:SS",
         "scan_time": "--scan-time HH:MM:SS"}
# tags an override replaces: their per-slice disagreement no longer matters once overridden
_REPLACES = {"weight": ("PatientWeight",), "height": ("PatientSize",), "sex": ("PatientSex",),
             "dose": ("RadionuclideTotalDose",), "half_life": ("RadionuclideHalfLife",),
             "injection_time": ("RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime"),
             "scan_time": ("SeriesDate", "SeriesTime")}
_RP_KEYS = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
            "RadiopharmaceuticalStartDateTime")
# override → (tag it replaces, lives in the radiopharmaceutical item, override unit, plausible (lo, hi], unit → SI)
_QUANTITIES = {"weight": ("PatientWeight", False, "kg", (0, 500), 1.0),
               "height": ("PatientSize", False, "m", (0, 3), 1.0),
               "dose": ("RadionuclideTotalDose", True, "MBq", (0.1, 1e5), 1e6),
               "half_life": ("RadionuclideHalfLife", True, "s", (0, 1e10), 1.0)}
_NO_INJECTION = ("PET header lacks RadiopharmaceuticalStartDateTime (0018,1078) and RadiopharmaceuticalStartTime "
                 "(0018,1072): pass --injection-time HH:MM:SS")


def _tag(keyword: str) -> str:
    t = tag_for_keyword(keyword)
    return f"({t >> 16:04X},{t & 0xFFFF:04X})"


def _check_names(overrides) -> dict:
    """Known override names only (a typo must not be ignored); None or "" means not given."""
    unknown = set(overrides) - set(_OVERRIDES)
    if unknown:
        raise TypeError(f"unknown SUV override(s) {sorted(unknown)}: use {', '.join(_OVERRIDES)}")
    return {k: v for k, v in overrides.items() if v is not None and v != ""}


@dataclass
class SUVParameters:
    """What SUV needs, in SI-ish units; None where unknown (weight/height/sex are demanded by `suv_factor` per type;
    half-life and times only for DecayCorrection START)."""

    weight_kg: float | None
    height_m: float | None
    sex: str | None
    dose_bq: float | None
    half_life_s: float | None
    injection_datetime: datetime | None
    scan_datetime: datetime | None
    decay_correction: str

    @property
    def uptake_time_s(self) -> float | None:
        if self.injection_datetime is None or self.scan_datetime is None:
            return None
        return (self.scan_datetime - self.injection_datetime).total_seconds()


def _lacks(tag: str, override: str, why: str = "") -> InputError:
    return InputError(f"PET header lacks {tag} {_tag(tag)}{why}: pass {_FLAG[override]}")


# ---- times ---------------------------------------------------------------------------------------------------------
_TM_RE = re.compile(r"^(\d{2}):?(\d{2})?(?::?(\d{2})(\.\d{1,6})?)?$")
_DT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?)?([+-]\d{4})?$")


def _tm(text) -> time | None:
    m = _TM_RE.match(str(text).strip())
    if not m:
        return None
    h, mi, s = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if h > 23 or mi > 59 or s > 59:
        return None
    return time(h, mi, s, int(round(float(m[4] or 0) * 1e6)) if m[4] else 0)


def _dt(text) -> tuple | None:
    """DICOM DT → (datetime, has_time); a UTC offset is ignored (times compared are all local clock times)."""
    m = _DT_RE.match(str(text).strip())
    if not m:
        return None
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    if m[4] is None:
        return datetime.combine(day, time()), False
    t = _tm(f"{m[4]}{m[5] or '00'}{m[6] or '00'}{m[7] or ''}")
    return (datetime.combine(day, t), True) if t is not None else None


def _stamp(ds, date_kw, time_kw: str, dt_kw=None, flag: str = "scan_time", default_date=None) -> tuple | None:
    """(datetime, dated) from a DT tag, else a DA + TM pair (DA missing: `default_date`); None without a time.
    Unreadable values are errors naming the tag, never silently skipped."""
    raw = ds.get(dt_kw) if dt_kw else None
    if raw not in (None, ""):
        got = _dt(raw)
        if got is None:
            raise InputError(f"{dt_kw} {_tag(dt_kw)} holds {str(raw)!r}, not a DICOM date-time: pass {_FLAG[flag]}")
        if got[1]:
            return got
        default_date = got[0].date()
    raw = ds.get(time_kw)
    if raw in (None, ""):
        return None
    t = _tm(raw)
    if t is None:
        raise InputError(f"{time_kw} {_tag(time_kw)} holds {str(raw)!r}, not a DICOM time: pass {_FLAG[flag]}")
    got = _dt(ds.get(date_kw) or "") if date_kw else None
    day = got[0].date() if got else default_date
    return datetime.combine(day or _NO_DATE, t), day is not None


def _user_time(value, what: str) -> tuple:
    """Override → (datetime, dated). Time-only values land on the placeholder day, dated=False."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None), True
    if isinstance(value, time):
        return datetime.combine(_NO_DATE, value.replace(tzinfo=None)), False
    text = str(value).strip()
    if re.match(r"^\d:\d", text):   # "9:30" → "09:30"
        text = "0" + text
    if "-" in text[:10] and len(text) > 10:
        try:
            return datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=None), True
        except ValueError:
            pass
    if len(text) >= 12 and text[:8].isdigit():
        got = _dt(text)
        if got and got[1]:
            return got[0], True
    t = _tm(text)
    if t is not None and (":" in text or len(text) >= 4):
        return datetime.combine(_NO_DATE, t), False
    raise InputError(f"cannot read {what} {text!r}: use HH:MM, HH:MM:SS or YYYY-MM-DDTHH:MM:SS")


def parse_time(value, reference_date=None) -> datetime:
    """Parse an override time: "14:49", "14:49:42", "144942", "20230825144942" or ISO "2023-08-25T14:49:42".

    Time-only values get `reference_date` (default 1900-01-01, a placeholder: only time differences matter).
    """
    when, dated = _user_time(value, "the time")
    if not dated and reference_date is not None:
        ref = reference_date.date() if isinstance(reference_date, datetime) else reference_date
        when = datetime.combine(ref, when.time())
    return when


def _injection(rp) -> tuple | None:
    """(datetime, dated) from the radiopharmaceutical item; StartDateTime preferred, StartTime must agree with it."""
    stamp = _stamp(rp, None, "RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartDateTime", "injection_time")
    alone = _stamp(rp, None, "RadiopharmaceuticalStartTime", flag="injection_time")
    if stamp and alone and stamp[1]:
        gap = abs(datetime.combine(_NO_DATE, stamp[0].time()) - alone[0]).total_seconds()
        if min(gap, 86400 - gap) > 1.0:
            raise InputError(f"RadiopharmaceuticalStartDateTime (0018,1078) says {stamp[0].time()} but "
                             f"RadiopharmaceuticalStartTime (0018,1072) says {alone[0].time()}: the injection time "
                             f"is contradictory; pass {_FLAG['injection_time']}")
    return stamp


def _earlier(a: tuple, b: tuple) -> tuple:
    """The earlier of two (datetime, dated) stamps; by clock time alone when either lacks a date."""
    if a[1] and b[1]:
        return a if a[0] <= b[0] else b
    return a if a[0].time() <= b[0].time() else b


def _scan_time(headers) -> tuple | None:
    """QIBA scan reference: SeriesDate/Time unless after the earliest acquisition start of the series."""
    s_date = _dt(headers[0].get("SeriesDate") or "")
    s_date = s_date[0].date() if s_date else None
    acquisitions = [a for a in (_stamp(ds, "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime",
                                       default_date=s_date) for ds in headers) if a]
    earliest = reduce(_earlier, acquisitions) if acquisitions else None
    series = _stamp(headers[0], "SeriesDate", "SeriesTime",
                    default_date=earliest[0].date() if earliest and earliest[1] else None)
    return _earlier(series, earliest) if series and earliest else series or earliest


def _align(injection: tuple, scan: tuple) -> tuple:
    """Put dateless stamps on the other's day; a dateless scan 'before' the injection is on the next day."""
    (inj, inj_dated), (scn, scn_dated) = injection, scan
    if inj_dated and scn_dated:
        return inj, scn
    day = scn.date() if scn_dated else inj.date() if inj_dated else _NO_DATE
    inj, scn = datetime.combine(day, inj.time()), datetime.combine(day, scn.time())
    if scn < inj:
        if scn_dated:
            inj -= _DAY
        else:
            scn += _DAY
    return inj, scn


def _check_uptake(params: SUVParameters) -> float:
    dt = params.uptake_time_s
    if dt < 0:
        raise InputError(f"the scan starts {-dt / 60:.1f} min before the injection (RadiopharmaceuticalStartDateTime "
                         f"vs SeriesDate/SeriesTime): check the dates or pass --injection-time and --scan-time")
    limit = max(86400.0, 5 * (params.half_life_s or 0.0))
    if dt > limit:
        raise InputError(f"the scan starts {dt / 3600:.1f} h after the injection, more than {limit / 3600:.0f} h for "
                         "this tracer: check the dates or pass --injection-time and --scan-time")
    return dt


# ---- header values -------------------------------------------------------------------------------------------------
def _value(ds, name):
    v = ds.get(name)
    if v is None or v == "":
        return None
    if hasattr(v, "__iter__") and not isinstance(v, (str, bytes)):
        return tuple(str(x).strip().upper() for x in v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v).strip()


def _rp_item(ds):
    """The first RadiopharmaceuticalInformationSequence item (an empty one when absent, so lookups give None)."""
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    return seq[0] if seq else pydicom.Dataset()


def _check_consistent(headers, overridden) -> None:
    """Slices of one series must agree on everything SUV depends on; a mix means a mis-assembled series."""
    if len(headers) < 2:
        return
    skip = {tag for name in overridden for tag in _REPLACES[name]}
    for name in ("Units", "DecayCorrection", "CorrectedImage", "PatientWeight", "PatientSize", "PatientSex",
                 "SeriesDate", "SeriesTime") + _RP_KEYS:
        if name in skip:
            continue
        values = list(dict.fromkeys(_value(_rp_item(ds) if name in _RP_KEYS else ds, name) for ds in headers))
        if len(values) > 1:
            shown = ", ".join("missing" if v is None else str(v) for v in values[:3])
            raise InputError(f"the slices of the series disagree on {name} {_tag(name)} ({shown}): the series mixes "
                             "acquisitions; choose a consistent series")


def _quantity(name: str, given: dict, first, rp) -> float | None:
    """An override (in its clinical unit) or the header value, checked for plausibility, in SI units; None if absent.
    Implausible values are nearly always unit slips (height in cm, dose in MBq in a Bq tag): say so."""
    keyword, in_rp, unit, (lo, hi), to_si = _QUANTITIES[name]
    if name in given:
        where = "--" + name.replace("_", "-")
        try:
            value = float(given[name])
        except (TypeError, ValueError):
            raise InputError(f"{where} must be a number in {unit}, not {given[name]!r}") from None
    else:
        where = f"{keyword} {_tag(keyword)}"
        raw = _value(rp if in_rp else first, keyword)
        if raw is None or raw == 0:          # 0 is what scanners write when nobody entered the value
            return None
        if not isinstance(raw, float):
            raise InputError(f"{where} holds {raw!r}, not a number: pass {_FLAG[name]}")
        value = raw / to_si
    if not lo < value <= hi:
        raise InputError(f"{where} is {value:g} {unit}, outside {lo:g}–{hi:g} {unit} (wrong unit?): "
                         f"pass {_FLAG[name]}")
    return value * to_si


def _preconditions(first) -> str:
    units = _value(first, "Units")
    if units is None:
        raise InputError("PET header lacks Units (0054,1001): cannot tell whether the pixels are Bq/mL; "
                         "export the PET with Units BQML")
    if str(units).upper() == "GML":
        raise InputError("Units (0054,1001) is GML: the images already hold SUVbw (g/mL); read them with "
                         "SUV type bw and no SUV overrides")
    if str(units).upper() != "BQML":
        raise InputError(f"Units (0054,1001) is {units}, not BQML: SUV needs activity concentration in Bq/mL; "
                         "export the PET in BQML")
    corrected = _value(first, "CorrectedImage")
    if corrected is None:
        raise InputError("PET header lacks CorrectedImage (0028,0051): cannot confirm attenuation and decay "
                         "correction (ATTN, DECY), which SUV needs; choose the corrected PET series")
    corrected = corrected if isinstance(corrected, tuple) else (str(corrected).upper(),)
    for need, what in (("ATTN", "attenuation"), ("DECY", "decay")):
        if need not in corrected:
            raise InputError(f"CorrectedImage (0028,0051) lacks {need}: the images are not {what}-corrected; "
                             "choose the corrected PET series")
    decay = _value(first, "DecayCorrection")
    if decay is None:
        raise InputError("PET header lacks DecayCorrection (0054,1102): cannot tell what time the activity refers "
                         "to; SUV needs START or ADMIN")
    decay = str(decay).upper()
    if decay not in ("START", "ADMIN"):
        raise InputError(f"DecayCorrection (0054,1102) is {decay}: only START or ADMIN decay-corrected images "
                         "give SUV; choose the decay-corrected PET series")
    return decay


def suv_parameters_from_dicom(ds, **overrides) -> SUVParameters:
    """SUV parameters from a PET header, or from a series' list of headers (then slices are checked to agree and the
    earliest AcquisitionTime is used). Overrides (None = not given) replace tag values: weight kg, height m,
    sex M/F, dose MBq, injection_time / scan_time (str or datetime), half_life s.

    Preconditions, contradictions and impossible times raise here; values that are simply missing stay None and
    `suv_factor` names the tag and flag when the chosen SUV type needs them."""
    given = _check_names(overrides)
    headers = list(ds) if isinstance(ds, (list, tuple)) else [ds]
    if not headers:
        raise InputError("no PET headers given: give a PET DICOM series")
    first = headers[0]
    _check_consistent(headers, given)
    decay = _preconditions(first)
    rp = _rp_item(first)

    weight, height, dose, half_life = (_quantity(n, given, first, rp) for n in _QUANTITIES)
    sex = str(given.get("sex", first.get("PatientSex", "")) or "").strip().upper() or None
    if "sex" in given and sex not in ("M", "F"):
        raise InputError(f"--sex must be M or F, not {given['sex']!r}")
    sex = sex if sex in ("M", "F") else None

    injection = _user_time(given["injection_time"], "--injection-time") if "injection_time" in given \
        else _injection(rp)
    scan = _user_time(given["scan_time"], "--scan-time") if "scan_time" in given else _scan_time(headers)
    inj_dt, scan_dt = _align(injection, scan) if injection is not None and scan is not None else (None, None)
    params = SUVParameters(weight, height, sex, dose, half_life, inj_dt, scan_dt, decay)
    if decay == "START" and params.uptake_time_s is not None:
        _check_uptake(params)
    return params


# ---- body-size normalisations --------------------------------------------------------------------------------------
def lean_body_mass_kg(weight_kg: float, height_m: float, sex: str) -> float:
    """James: 1.10 W − 128 (W/H)² men, 1.07 W − 148 (W/H)² women (W kg, H cm); the formula QIBA/Slicer use."""
    ratio = weight_kg / (height_m * 100.0)
    return 1.10 * weight_kg - 128.0 * ratio ** 2 if sex == "M" else 1.07 * weight_kg - 148.0 * ratio ** 2


def body_surface_area_m2(weight_kg: float, height_m: float) -> float:
    """Du Bois: 0.007184 · W^0.425 · H_cm^0.725 (m²)."""
    return 0.007184 * weight_kg ** 0.425 * (height_m * 100.0) ** 0.725


def ideal_body_weight_kg(height_m: float, sex: str) -> float:
    """48.0 + 1.06 (H_cm − 152) men, 45.5 + 0.91 (H_cm − 152) women: the form pysuv also uses ("Devine"); its male
    coefficients are Hamwi's (48 kg + 2.7 kg/inch), its female ones Devine's (45.5 kg + 2.3 kg/inch)."""
    h = height_m * 100.0
    return 48.0 + 1.06 * (h - 152.0) if sex == "M" else 45.5 + 0.91 * (h - 152.0)


def _normaliser(params: SUVParameters, suv_type: str) -> float:
    """Grams for bw/lbm/ibw, cm² for bsa. Accepts hand-built parameters too (numbers as strings, sex in any case)."""
    weight = float(params.weight_kg) if params.weight_kg not in (None, "") else 0.0
    height = float(params.height_m) if params.height_m not in (None, "") else 0.0
    sex = str(params.sex or "").strip().upper()
    if suv_type in ("bw", "lbm", "bsa") and weight <= 0:
        raise _lacks("PatientWeight", "weight")
    if suv_type in ("lbm", "bsa", "ibw") and height <= 0:
        raise _lacks("PatientSize", "height", f", needed for SUV{suv_type}")
    if suv_type in ("lbm", "ibw") and sex not in ("M", "F"):
        raise _lacks("PatientSex", "sex", f" (M or F), needed for SUV{suv_type}")
    if suv_type == "bw":
        return weight * 1000.0
    if suv_type == "bsa":
        return body_surface_area_m2(weight, height) * 1e4
    mass = lean_body_mass_kg(weight, height, sex) if suv_type == "lbm" else ideal_body_weight_kg(height, sex)
    if mass <= 0:
        raise InputError(f"the {suv_type.upper()} formula gives {mass:.1f} kg for this weight and height: "
                         "use SUV type bw or bsa")
    return mass * 1000.0


def _suv_type(suv_type) -> str:
    t = str(suv_type).strip().lower()
    if t not in SUV_TYPES:
        raise InputError(f"unknown SUV type {suv_type!r}: use one of {', '.join(SUV_TYPES)}")
    return t


def suv_factor(params: SUVParameters, suv_type: str = "bw") -> float:
    """Multiply Bq/mL by this to get SUV: g/mL for bw, lbm, ibw; cm²/mL for bsa."""
    t = _suv_type(suv_type)
    if not params.dose_bq or params.dose_bq <= 0:
        raise _lacks("RadionuclideTotalDose", "dose")
    if params.decay_correction == "START":
        if not params.half_life_s:
            raise _lacks("RadionuclideHalfLife", "half_life")
        if params.injection_datetime is None:
            raise InputError(_NO_INJECTION)
        if params.scan_datetime is None:
            raise InputError("PET header lacks SeriesTime (0008,0031) and AcquisitionTime (0008,0032): "
                             f"pass {_FLAG['scan_time']}")
        decay = 2.0 ** (_check_uptake(params) / params.half_life_s)
    elif params.decay_correction == "ADMIN":
        decay = 1.0
    else:
        raise InputError(f"DecayCorrection (0054,1102) is {params.decay_correction}: only START or ADMIN "
                         "decay-corrected images give SUV")
    return _normaliser(params, t) * decay / params.dose_bq


def read_dicom_pet(directory, suv_type="bw", series_uid=None, **overrides) -> Volume:
    """The PT series in `directory` as a float32 SUV volume (see module docstring for the rules)."""
    t = _suv_type(suv_type)
    _check_names(overrides)
    volume, headers = read_dicom_volume(directory, series_uid=series_uid, modality="PT")
    if all(str(h.get("Units", "")).strip().upper() == "GML" for h in headers):
        if t != "bw":
            raise InputError(f"Units (0054,1001) is GML: the images already hold SUVbw, so SUV{t} cannot be "
                             "derived; use SUV type bw")
        if _check_names(overrides):
            raise InputError("Units (0054,1001) is GML: the images already hold SUVbw, so SUV overrides "
                             "(weight, dose, times) cannot apply; drop them")
        return volume
    factor = suv_factor(suv_parameters_from_dicom(headers, **overrides), t)
    volume.array *= np.float32(factor)
    return volume
