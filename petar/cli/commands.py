"""The `petar` subcommands (demo, phantom, measure, segment, report): parse → engine → atomic outputs."""
from __future__ import annotations

import logging
from pathlib import Path

from ..atomic import write_json, write_text
from .evaluate_cmd import add_evaluate_grounding
from .parser import add_pet_options, pet_overrides, point_arg, positive_float
from .table import measurement_rows, render

log = logging.getLogger("petar.cli")


def _read_pet(args):
    from ..io import read_pet

    return read_pet(args.pet, **pet_overrides(args))


def _emit_json(path, doc) -> None:
    if path:
        write_json(path, doc)


def _print(args, text: str) -> None:
    """Human output goes to stdout unless JSON goes there."""
    if getattr(args, "json", None) != "-":
        print(text)


# ---- phantom ---------------------------------------------------------------------------------------------------
def add_phantom(sub):
    p = sub.add_parser("phantom", help="write a synthetic whole-body PET/CT with known lesions",
                       description="Synthetic whole-body PET (SUV) and CT (HU) with lesions of known SUVmax, size and "
                                   "position; writes pet.nii.gz, ct.nii.gz, lesions.nii.gz and truth.json.")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same phantom")
    p.set_defaults(run=run_phantom)


def run_phantom(args) -> int:
    from ..phantom import make_phantom

    phantom = make_phantom(seed=args.seed)
    files = phantom.write(args.out)
    print(f"wrote {', '.join(Path(f).name for f in files.values())} to {args.out} "
          f"({len(phantom.truth)} lesions, seed {args.seed})")
    return 0


# ---- measure ---------------------------------------------------------------------------------------------------
def add_measure(sub):
    p = sub.add_parser("measure", help="SUVmax/peak/mean, MTV, TLG, diameters per lesion label",
                       description="Measure each lesion label of a mask on the PET (SUV). One label = one lesion. "
                                   "A mask on another grid covering the same space is resampled (nearest neighbour).")
    p.add_argument("--pet", required=True, help="PET image file or DICOM series folder")
    p.add_argument("--ct", help="CT (optional): adds each lesion's mean HU")
    p.add_argument("--mask", required=True, help="lesion label image (0 background, 1..N lesions)")
    p.add_argument("--label", type=int, help="measure only this label")
    p.add_argument("--slice-origin", choices=("superior", "inferior"), default="superior",
                   help="axial slice numbers count from this end (default superior, as on PACS)")
    p.add_argument("--json", metavar="OUT", help="write the Measurement JSON here ('-' for stdout)")
    add_pet_options(p)
    p.set_defaults(run=run_measure)


def run_measure(args) -> int:
    from ..io import read_mask, read_volume
    from ..lesion import measure, measurement_document

    pet = _read_pet(args)
    mask = read_mask(args.mask, pet)
    ct = read_volume(args.ct) if args.ct else None
    lesions = measure(pet, mask, label=args.label, slice_origin=args.slice_origin, ct=ct)
    _emit_json(args.json, measurement_document(lesions, args.suv_type))
    _print(args, render(*measurement_rows(lesions)) + f"\n(SUV{args.suv_type}; slices from the {args.slice_origin} end)")
    return 0


# ---- segment ---------------------------------------------------------------------------------------------------
def add_segment(sub):
    p = sub.add_parser("segment", help="click-to-segment: the lesion at a point → 3D mask",
                       description="Segment the lesion at a clicked point. The click snaps to the hottest voxel "
                                   "within --snap-mm; the region connected to it above the threshold is returned. "
                                   "Coordinates may be negative as typed: --point -50.2,12,3")
    p.add_argument("--pet", required=True, help="PET image file or DICOM series folder")
    p.add_argument("--point", required=True, type=point_arg, metavar="X,Y,Z", help="the click")
    p.add_argument("--space", choices=("ras", "lps", "ijk"), default="ras",
                   help="coordinate space of --point: RAS as Slicer shows it (default), LPS as DICOM/ITK, or "
                        "0-based voxel index i,j,k")
    p.add_argument("--method", choices=("percent", "fixed", "adaptive"), default="percent",
                   help="percent of SUVmax (default), fixed SUV threshold, or adaptive (Jentzen iterative)")
    p.add_argument("--percent", type=positive_float, default=41.0, help="percent of SUVmax (default 41)")
    p.add_argument("--threshold", type=positive_float, default=2.5, help="fixed SUV threshold (default 2.5)")
    p.add_argument("--snap-mm", type=float, default=7.0, help="snap to the hottest voxel within this radius (7)")
    p.add_argument("--no-snap", action="store_true", help="use the clicked voxel as the seed")
    p.add_argument("--max-radius", type=positive_float, default=80.0, metavar="MM",
                   help="leak guard: the lesion may not reach this far from the seed (default 80 mm)")
    p.add_argument("--max-volume", type=positive_float, default=500.0, metavar="ML",
                   help="leak guard: largest accepted lesion volume (default 500 mL)")
    p.add_argument("--out", required=True, type=Path, help="output mask (.nii.gz, .nrrd, .mha)")
    p.add_argument("--json", metavar="OUT", help="write the segmentation details and measurement here ('-': stdout)")
    add_pet_options(p)
    p.set_defaults(run=run_segment)


def run_segment(args) -> int:
    from ..io import write_volume
    from ..io.files import check_writable_name
    from ..lesion import click_segment, measure

    check_writable_name(args.out)
    pet = _read_pet(args)
    seg = click_segment(pet, args.point, space=args.space, method=args.method, percent=args.percent,
                        threshold=args.threshold, snap_mm=0.0 if args.no_snap else args.snap_mm,
                        max_radius_mm=args.max_radius, max_volume_ml=args.max_volume)
    (m,) = measure(pet, seg.mask)
    write_volume(seg.mask, args.out)
    _emit_json(args.json, {"segmentation": seg.to_dict(), "suv_type": args.suv_type, "lesion": m.to_dict()})
    _print(args, f"segmented {m.voxels} voxels ({m.mtv_ml:.2f} mL) at threshold SUV {seg.threshold:.2f} "
                 f"({args.method}); SUVmax {m.suv_max:.2f}, axial image {m.axial_slice} → {args.out}")
    return 0


# ---- report ----------------------------------------------------------------------------------------------------
def add_report(sub):
    p = sub.add_parser("report", help="findings text per lesion, numbers measured from the mask",
                       description="Write one finding per lesion label. Engine 'template' writes the findings "
                                   "from measurements alone (no model; region from the CT). Engine 'petar' runs "
                                   "PETAR-4B on PET + CT + lesion and replaces every number it writes with the "
                                   "measured one (the replacements are listed in the JSON).")
    p.add_argument("--pet", required=True, help="PET image file or DICOM series folder")
    p.add_argument("--ct", required=True, help="CT image file or DICOM series folder")
    p.add_argument("--mask", required=True, help="lesion label image (0 background, 1..N lesions)")
    p.add_argument("--label", type=int, help="report only this label")
    p.add_argument("--engine", choices=("template", "petar"), default="template",
                   help="findings engine (default template; petar needs the [model] extra and weights)")
    m = p.add_argument_group("PETAR-4B engine")
    m.add_argument("--model", metavar="HF_ID_OR_DIR", help="checkpoint folder or cached hub id (default "
                                                          "laynad/PETAR-4B; fetch with `petar models pull`)")
    m.add_argument("--revision", help="revision of a hub id to use (as pulled)")
    m.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: CUDA when present")
    m.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="auto: bf16 on CUDA with bf16 support, fp16 on other CUDA, fp32 on CPU")
    m.add_argument("--quantize", choices=("4bit", "8bit"), help="bitsandbytes quantisation of the language model "
                                                                "(CUDA only; vision towers stay unquantised)")
    m.add_argument("--max-new-tokens", type=int, default=256, help="generation limit per finding (default 256)")
    m.add_argument("--question", help="prompt question (default: the official one)")
    p.add_argument("--slice-origin", choices=("superior", "inferior"), default="superior",
                   help="axial slice numbers count from this end (default superior)")
    p.add_argument("--json", metavar="OUT", help="write the report JSON here ('-' for stdout)")
    p.add_argument("--txt", metavar="OUT", help="write the findings as plain text here")
    add_pet_options(p)
    p.set_defaults(run=run_report)


def run_report(args) -> int:
    from .. import report
    from ..io import read_mask, read_volume

    pet = _read_pet(args)
    mask = read_mask(args.mask, pet)
    ct = read_volume(args.ct, series_uid=None)
    kw = {}
    if args.engine == "petar":
        kw = dict(model=args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                  quantize=args.quantize, max_new_tokens=args.max_new_tokens, question=args.question)
    result = report(pet, ct, mask, label=args.label, engine=args.engine, suv_type=args.suv_type,
                    slice_origin=args.slice_origin, **kw)
    _emit_json(args.json, result.to_dict())
    if args.txt:
        write_text(args.txt, result.text + "\n")
    _print(args, result.text)
    return 0


def add_demo(sub):
    from .demo import run_demo

    p = sub.add_parser("demo", help="the whole job on a synthetic PET/CT: click, segment, measure, report",
                       description="Make a phantom, click each lesion's hottest point, segment it, measure it and "
                                   "print the findings with a table; everything is written to --out.")
    p.add_argument("--out", type=Path, default=Path("petar_demo"), help="output folder (default ./petar_demo)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument("--method", choices=("percent", "fixed", "adaptive"), default="adaptive",
                   help="click-segmentation method tried first (default adaptive); when its leak or contrast guard "
                        "refuses a lesion, the demo tries the others, as a reader would, and says so")
    p.set_defaults(run=run_demo)


def _add_models(sub):
    from .models_cmd import add_models

    add_models(sub)


def _add_ground(sub):
    from .ground_cmd import add_ground

    add_ground(sub)


def _add_serve(sub):
    from .serve_cmd import add_serve

    add_serve(sub)


def _add_study(sub):
    from .study_cmd import add_study

    add_study(sub)


def _add_evaluate_reports(sub):
    from .reports_cmd import add_evaluate_reports

    add_evaluate_reports(sub)


def _add_grounding_training(sub):
    from .grounding_cmd import add_make_grounding_dataset, add_train_grounding

    add_make_grounding_dataset(sub)
    add_train_grounding(sub)


ADDERS = (add_demo, add_phantom, add_measure, add_segment, add_report, _add_ground, _add_models,
          _add_grounding_training, add_evaluate_grounding, _add_evaluate_reports, _add_study, _add_serve)
