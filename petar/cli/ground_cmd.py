"""`petar ground`: a typed finding → the lesion mask it describes."""
from __future__ import annotations

from pathlib import Path

from .parser import add_pet_options, pet_overrides
from .table import render


def add_ground(sub):
    p = sub.add_parser("ground", help="typed finding → the lesion it describes (mask + measurement)",
                       description="Find the lesion a report sentence describes. Engine 'rule' (no weights) is "
                                   "exact when the text has SUVmax and axial slice ('SUVmax 7.1, image 104'); "
                                   "several matches give status 'ambiguous' with ranked candidates, never a silent "
                                   "pick. Engine 'contextual' runs a ConTEXTual Net 3D checkpoint folder. The mask "
                                   "is written only when a lesion is found.")
    p.add_argument("--pet", required=True, help="PET image file or DICOM series folder")
    p.add_argument("--ct", help="CT image file or DICOM series folder (the contextual engine needs it)")
    p.add_argument("--text", required=True, help="the finding, e.g. \"FDG-avid left axillary node, SUVmax 7.1, "
                                                 "image 104\"")
    p.add_argument("--engine", choices=("rule", "contextual"), default="rule", help="grounding engine (default rule)")
    p.add_argument("--model", metavar="DIR", help="ConTEXTual Net 3D checkpoint folder (plans.json, fold_0/...)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--slice-origin", choices=("superior", "inferior"), default="superior",
                   help="how the text's image numbers count (default: from the superior end, as on PACS)")
    p.add_argument("--suv-tolerance", type=float, default=0.1, help="rule engine: SUVmax match tolerance (0.1)")
    p.add_argument("--out", required=True, type=Path, help="output mask (.nii.gz, .nrrd, .mha), written if found")
    p.add_argument("--json", metavar="OUT", help="write the grounding JSON here ('-' for stdout)")
    add_pet_options(p)
    p.set_defaults(run=run_ground)


def run_ground(args) -> int:
    from ..atomic import write_json
    from ..grounding import ground
    from ..io import read_pet, read_volume, write_volume
    from ..io.files import check_writable_name

    check_writable_name(args.out)
    pet = read_pet(args.pet, **pet_overrides(args))
    ct = read_volume(args.ct) if args.ct else None
    kw = {"suv_tolerance": args.suv_tolerance} if args.engine == "rule" else {"device": args.device}
    res = ground(args.text, pet, ct, engine=args.engine, model=args.model, slice_origin=args.slice_origin, **kw)
    if res.mask is not None:
        write_volume(res.mask, args.out)
    if args.json:
        write_json(args.json, res.to_dict())
    if args.json != "-":
        lines = [f"status: {res.status} — {res.message}"]
        if res.lesion is not None:
            m = res.lesion
            lines.append(f"lesion: SUVmax {m.suv_max:.2f}, axial image {m.axial_slice}, MTV {m.mtv_ml:.2f} mL → "
                         f"{args.out}")
        if res.candidates and res.status != "found":
            rows = [[i + 1, f"{c.score:.2f}", f"{c.suv_max:.2f}", c.axial_slice, c.side,
                     ", ".join(f"{v:.1f}" for v in c.hottest_ras)] for i, c in enumerate(res.candidates)]
            lines.append(render(["#", "score", "SUVmax", "slice", "side", "hottest RAS"], rows, right={0, 1, 2, 3}))
        print("\n".join(lines))
    return 0
