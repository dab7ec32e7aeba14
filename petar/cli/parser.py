"""Argument parsing for `petar`: one-line usage errors (exit 2) and coordinates that may start with '-'."""
from __future__ import annotations

import argparse
import re
import sys

_NUMBER_LIST = re.compile(r"^-?(\d+\.?\d*|\.\d+)(e-?\d+)?(,\s*-?(\d+\.?\d*|\.\d+)(e-?\d+)?)*$", re.I)
VALUE_OPTIONS_WITH_NEGATIVES = ("--point",)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: `error: <what> (see petar <cmd> --help)`, exit 2."""

    def error(self, message):  # noqa: D401 (argparse API)
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def join_negative_values(argv: list[str]) -> list[str]:
    """`--point -50.2,12,3` → `--point=-50.2,12,3` (argparse would take '-50.2,12,3' for an option)."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok in VALUE_OPTIONS_WITH_NEGATIVES and i + 1 < len(argv) and _NUMBER_LIST.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def point_arg(text: str) -> tuple[float, float, float]:
    """Parse X,Y,Z (spaces allowed)."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z numbers, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers X,Y,Z, got {len(values)} in {text!r}")
    return values


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def add_pet_options(p: argparse.ArgumentParser) -> None:
    """PET units and SUV options shared by every command that reads a PET."""
    g = p.add_argument_group("PET units and SUV (DICOM tags are used when present; these override them)")
    g.add_argument("--suv-type", choices=("bw", "lbm", "bsa", "ibw"), default="bw",
                   help="SUV normalisation: body weight (default), lean body mass (James), body surface area "
                        "(Du Bois), ideal body weight")
    g.add_argument("--units", choices=("suv", "bqml"),
                   help="units of a PET image file (default: suv); bqml needs --weight, --dose, --injection-time, "
                        "--scan-time and --half-life")
    g.add_argument("--series", metavar="UID", help="series instance UID when a DICOM folder holds several series")
    g.add_argument("--weight", type=positive_float, metavar="KG", help="patient weight in kg")
    g.add_argument("--height", type=positive_float, metavar="M", help="patient height in metres (lbm, bsa, ibw)")
    g.add_argument("--sex", choices=("M", "F"), help="patient sex (lbm, ibw)")
    g.add_argument("--dose", type=positive_float, metavar="MBQ", help="injected activity in MBq")
    g.add_argument("--injection-time", metavar="TIME", help="injection time, HH:MM[:SS] or ISO date-time")
    g.add_argument("--scan-time", metavar="TIME", help="scan (series) start time, HH:MM[:SS] or ISO date-time")
    g.add_argument("--half-life", type=positive_float, metavar="SECONDS",
                   help="radionuclide half-life in seconds (F-18: 6586.2, Ga-68: 4062.6)")


def pet_overrides(args) -> dict:
    """The read_pet keyword arguments from parsed PET options."""
    keys = ("weight", "height", "sex", "dose", "injection_time", "scan_time", "half_life")
    kw = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    kw.update(suv_type=args.suv_type, units=args.units, series_uid=args.series)
    return kw
