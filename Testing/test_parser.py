"""Finding-text parser: number formats (property-based), realistic report sentences, the encoder text, bad input."""
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import petar
from petar.grounding import ParsedFinding, parse_finding, text_for_encoder

# ---------------------------------------------------------------- property-based: number formats
SUV_FORMS = ["SUVmax {v}", "SUV max of {v}", "max SUV {v}", "SUV {v}", "SUVmax: {v}", "SUVmax={v}", "SUV max {v}",
             "maximum SUV of {v}", "SUVmax of approximately {v}", "(SUVmax {v})", "SUV-max {v}", "SUV(max) {v}",
             "an SUVmax of {v}", "SUVmax measuring {v}", "max. SUV {v}", "SUVmax ~{v}", "SUVmax value of {v}",
             "SUVmax is {v}", "highest SUV {v}", "SUVmax of up to {v}", "SUV maximum {v}"]
PRIOR_FORMS = ["{suv}, previously {p}", "{suv} (from {p})", "{suv} (previously {p})", "{suv}, was {p}",
               "{suv} (prior {p})", "{suv}, compared to {p} on 01/02/2023", "SUVmax has increased from {p} to {c}",
               "SUVmax decreased to {c} from {p}", "{suv} versus {p} previously", "{suv} (previously SUVmax {p})",
               "SUVmax {c} vs. {p} on prior", "SUV max was {p}, now {c}", "{suv} (previously {p} on 01/02/2023)",
               "{suv}; prior SUVmax {p}", "previously {p}, now {suv}", "{suv}, up from {p}"]
SLICE_FORMS = [("image {n}", False), ("slice {n}", False), ("axial image {n}", False),
               ("(series {s}, image {n})", True),
               ("({s}:{n})", True), ("series {s} image {n}", True), ("image {n} of series {s}", True),
               ("(image {n}, series {s})", True), ("axial slice #{n}", False), ("im {n}", False),
               ("(Se {s}, Im {n})", True), ("on image {n}", False), ("Series {s}, Image {n}", True),
               ("series/image {s}/{n}", True), ("image no. {n}", False), ("images {lo}-{hi}", False),
               ("slices {lo} through {hi}", False)]
DISTRACTORS = ["coronal image {m}", "(series {s2}, coronal image {m})", "sagittal slice {m}", "coronal series {s2}, "
               "image {m}", "(image {m}, coronal)"]
PREFIXES = [("FDG-avid left axillary node", []), ("Hypermetabolic right lower lobe nodule measuring 1.4 cm", [14.0]),
            ("PSMA-avid left external iliac node, 12 x 8 mm", [12.0, 8.0]),
            ("Focal uptake in the L3 vertebral body", []),
            ("Mass in liver segment 7 measuring 3.1 x 2.4 x 2.0 cm", [31.0, 24.0, 20.0])]
EXTRAS = ["SUVpeak {q}", "liver SUVmean {q}", "mediastinal blood pool SUV {q}", "(SUV peak {q})"]


@st.composite
def suv_value(draw):
    decimals = draw(st.integers(0, 2))
    v = draw(st.integers(5 * 10 ** (decimals - 1) if decimals else 1, 40 * 10 ** decimals)) / 10 ** decimals
    text = f"{v:.{decimals}f}"
    return text, float(text)


@st.composite
def sentence(draw):
    c_text, c = draw(suv_value())
    suv = draw(st.sampled_from(SUV_FORMS)).format(v=c_text)
    prior = None
    if draw(st.booleans()):
        p_text, prior = draw(suv_value())
        suv = draw(st.sampled_from(PRIOR_FORMS)).format(suv=suv, p=p_text, c=c_text)
    parts = [suv]
    n = s = None
    if draw(st.booleans()):
        form, has_series = draw(st.sampled_from(SLICE_FORMS))
        n, s = draw(st.integers(2, 998)), draw(st.integers(1, 999))
        parts.append(form.format(n=n, s=s, lo=n - 1, hi=n + 1))
        s = s if has_series else None
    if draw(st.booleans()):
        distractor = draw(st.sampled_from(DISTRACTORS))
        parts.append(distractor.format(m=draw(st.integers(1, 400)), s2=draw(st.integers(1, 99))))
    extra = draw(st.sampled_from(EXTRAS)).format(q=draw(suv_value())[0]) if draw(st.booleans()) else None
    if extra and not suv.startswith("previously"):    # "SUVpeak 5, previously 4, now SUVmax 7" is ambiguous
        parts.append(extra)
    parts = draw(st.permutations(parts)) + ([extra] if extra and suv.startswith("previously") else [])
    joiner = ", " if prior is not None else draw(st.sampled_from([", ", " ", "; "]))
    prefix, size = draw(st.sampled_from(PREFIXES))
    return f"{prefix}, {joiner.join(parts)}.", {"suv_max": c, "suv_prior": prior, "axial_slice": n, "series": s,
                                              "size_mm": size}, prefix


@settings(max_examples=400, deadline=None)
@given(sentence())
def test_number_formats_round_trip(case):
    text, expected, _ = case
    d = parse_finding(text).to_dict()
    assert {k: d[k] for k in expected} == expected, text
    assert d["lesion_count"] == 1 and d["negative"] is False, text


def _numbers(text):
    return Counter(re.findall(r"\d+(?:\.\d+)?", text))


@settings(max_examples=200, deadline=None)
@given(sentence())
def test_encoder_text_has_no_suv_or_slice_number(case):
    text, _, prefix = case
    enc = text_for_encoder(text)
    allowed = _numbers(prefix) + (_numbers("01/02/2023") if "01/02/2023" in text else Counter())
    assert _numbers(enc) == allowed, (text, enc)
    assert enc.startswith(prefix), (text, enc)
    assert "  " not in enc and "()" not in enc and " ," not in enc, enc


# ---------------------------------------------------------------- realistic sentences
TABLE = [
    ("FDG-avid left axillary node measuring 1.4 cm, SUVmax 7.1 (series 4, image 104).",
     dict(suv_max=7.1, axial_slice=104, series=4, size_mm=[14.0], laterality="left", site="left axillary node",
          tracer="FDG", lesion_count=1)),
    ("Hypermetabolic right lower lobe nodule, SUV max of 5.3, axial image 88 (coronal image 120).",
     dict(suv_max=5.3, axial_slice=88, series=None, laterality="right", site="right lower lobe")),
    ("Focal uptake in the L3 vertebral body, SUVmax 6.1 (3:231).",
     dict(suv_max=6.1, axial_slice=231, series=3, laterality="midline", site="L3 vertebral body")),
    ("Hypermetabolic lesion in hepatic segment VII measuring 3.1 x 2.4 x 2.0 cm, maximum SUV of 12.35, image 231 of "
     "series 4.", dict(suv_max=12.35, axial_slice=231, series=4, size_mm=[31.0, 24.0, 20.0], site="liver segment 7",
                      laterality=None)),
    ("PSMA-avid right external iliac node, 12 x 8 mm, SUVmax=14.2 (image 231, series 4).",
     dict(suv_max=14.2, axial_slice=231, series=4, size_mm=[12.0, 8.0], laterality="right",
          site="right external iliac node", tracer="PSMA")),
    ("Ga-68 DOTATATE avid pancreatic tail mass, SUVmax: 45.1, slice 150.",
     dict(suv_max=45.1, axial_slice=150, site="pancreatic tail", tracer="DOTATATE", laterality=None)),
    ("Mediastinal node, SUVmax 6.0 (series 5, coronal image 88).",
     dict(suv_max=6.0, axial_slice=None, series=None, laterality="midline", site="mediastinal node")),
    ("Fluciclovine uptake in the prostate bed, SUV 4.2 on axial slice #231.",
     dict(suv_max=4.2, axial_slice=231, site="prostate bed", tracer="fluciclovine", laterality="midline")),
    ("Axumin-avid left obturator node measuring 9 mm, SUVmax 5.8 (image 260).",
     dict(suv_max=5.8, axial_slice=260, size_mm=[9.0], tracer="fluciclovine", site="left obturator node")),
    ("18F-DCFPyL avid left common iliac nodes measuring up to 9 mm, SUVmax 12.4 and 8.7 (images 210 and 215).",
     dict(suv_max=12.4, axial_slice=210, size_mm=[9.0], tracer="PSMA", lesion_count=2, laterality="left")),
    ("Piflufolastat F 18 uptake in the prostate, SUVmax 22.1, image 250.",
     dict(suv_max=22.1, axial_slice=250, tracer="PSMA", site="prostate", laterality="midline")),
    ("Ga-68 PSMA-11 avid right seminal vesicle focus, SUVmax 9.3 (series 3, image 301).",
     dict(suv_max=9.3, axial_slice=301, series=3, tracer="PSMA", laterality="right")),
    ("Cu-64 Detectnet avid liver lesions, SUVmax ranging from 8.2 to 15.6.",
     dict(suv_max=15.6, suv_prior=None, tracer="DOTATATE", lesion_count=2, site="liver")),
    ("Netspot-avid mesenteric mass, 2.8 cm, SUVmax 31.2, image 180.",
     dict(suv_max=31.2, size_mm=[28.0], tracer="DOTATATE", site="mesenteric")),
    ("Two left axillary nodes with SUVmax 5.1 (image 100) and 6.2 (image 104).",
     dict(suv_max=5.1, axial_slice=100, lesion_count=2, laterality="left", site="left axillary nodes")),
    ("Multiple FDG-avid left axillary nodes, the largest measuring 2.1 cm with SUVmax 9.3 (image 104).",
     dict(suv_max=9.3, axial_slice=104, size_mm=[21.0], lesion_count=2, laterality="left")),
    ("Bilateral hilar nodes, SUVmax up to 4.1.", dict(suv_max=4.1, laterality="bilateral", lesion_count=2)),
    ("Right lower lobe nodule, SUVmax 4.5 (image 102), and a left hilar node, SUVmax 3.0 (image 110).",
     dict(suv_max=4.5, axial_slice=102, laterality="bilateral", lesion_count=2, site="right lower lobe")),
    ("Left axillary node SUVmax 7.4 and right axillary node 5.2.", dict(suv_max=7.4, lesion_count=2)),
    ("No FDG-avid lymphadenopathy.", dict(negative=True, lesion_count=0, suv_max=None, tracer="FDG")),
    ("No evidence of PSMA-avid recurrence.", dict(negative=True, lesion_count=0, tracer="PSMA")),
    ("Left axillary node measuring 1.2 cm without FDG avidity.",
     dict(negative=True, lesion_count=0, size_mm=[12.0], site="left axillary node")),
    ("Negative for DOTATATE-avid disease.", dict(negative=True, lesion_count=0, tracer="DOTATATE")),
    ("The left axillary node is no longer FDG-avid.", dict(negative=True, lesion_count=0, laterality="left")),
    ("Resolution of the previously FDG-avid left axillary node (previously SUVmax 7.1).",
     dict(negative=True, lesion_count=0, suv_max=None, suv_prior=7.1)),
    ("Left axillary node measuring 1.2 cm with no necrosis.", dict(negative=False, lesion_count=1)),
    ("Previously seen right lung nodule is not FDG avid (SUVmax 1.2).", dict(negative=True, lesion_count=0)),
    ("Left axillary node SUVmax 7.1; non-avid right lung nodule.", dict(negative=False, suv_max=7.1)),
    ("No change in the FDG-avid left axillary node, SUVmax 7.1.", dict(negative=False, suv_max=7.1, lesion_count=1)),
    ("Left axillary node, SUVmax 7.1; no other hypermetabolic lesions.",
     dict(negative=False, suv_max=7.1, lesion_count=1)),
    ("Increased uptake in the T12 vertebral body with SUVmax of approximately 8.4 (3:150), previously 4.2.",
     dict(suv_max=8.4, suv_prior=4.2, axial_slice=150, series=3, site="T12 vertebral body", laterality="midline")),
    ("FDG-avid left level II cervical node, 1.5 x 1.1 cm, SUVmax 9.9 (image 35) compared to 6.1 on March 3, 2023.",
     dict(suv_max=9.9, suv_prior=6.1, axial_slice=35, size_mm=[15.0, 11.0], site="left level II cervical node")),
    ("Hypermetabolic left adrenal nodule, SUV 5.5 (series 4, image 140; coronal series 5, image 60).",
     dict(suv_max=5.5, axial_slice=140, series=4, site="left adrenal", laterality="left")),
    ("Right paratracheal (4R) node, SUVmax 5.5, series 3 image 98.",
     dict(suv_max=5.5, axial_slice=98, series=3, laterality="right", site="right paratracheal (4R) node")),
    ("Station 10L node with SUVmax 4.4 on image 112.", dict(laterality="left", site="station 10L node")),
    ("Lt. supraclavicular node, SUVmax 3.3, im 55.", dict(laterality="left", site="left supraclavicular node",
                                                          axial_slice=55)),
    ("Sclerotic lesion in the right posterior 6th rib, SUVmax 4.5 (series 602, image 211).",
     dict(suv_max=4.5, axial_slice=211, series=602, site="right posterior 6th rib")),
    ("Focal uptake within the head of the pancreas, SUVmax 6.3, image 188.", dict(site="head of the pancreas")),
    ("Lesion in the upper outer quadrant of the left breast, 2.3 x 1.9 cm, SUVmax 11.2, image 95.",
     dict(size_mm=[23.0, 19.0], site="upper outer quadrant of the left breast", laterality="left")),
    ("Intense uptake in the right iliac bone (SUVmax 9.0, image 70), previously 7.5.",
     dict(suv_max=9.0, suv_prior=7.5, axial_slice=70, site="right iliac bone")),
    ("SUVmax 7.4 on image 231 (previously 5.2 on image 229).", dict(suv_max=7.4, suv_prior=5.2, axial_slice=231,
                                                                      lesion_count=1)),
    ("Mildly avid right hilar node, SUVpeak 3.1, image 99.", dict(suv_max=None, axial_slice=99)),
    ("Right adrenal nodule, SUVmax 7.4 (liver SUVmean 2.1, blood pool 1.8).", dict(suv_max=7.4, lesion_count=1)),
    ("Subcarinal node, SUVmax 8.0, located 3 cm below the carina.", dict(size_mm=[], laterality="midline")),
    ("Hypermetabolic right-sided pleural-based mass, SUVmax 10.2 (axial slice 140).",
     dict(laterality="right", site="right pleural", axial_slice=140)),
    ("Two foci in the sacrum with SUVmax 6.1 and 7.2.", dict(suv_max=6.1, lesion_count=2, site="sacrum")),
    ("Soft tissue nodule in the left gluteal region, 1.2 cm, SUV 3.3 on image 300/450.",
     dict(suv_max=3.3, axial_slice=300, size_mm=[12.0], site="left gluteal region")),
    ("Right hilar node SUVmax 3.1, mediastinal blood pool SUVmax 2.0, liver SUVmax 3.0.",
     dict(suv_max=3.1, lesion_count=1, site="right hilar node")),
    ("Hypermetabolic lesion in the liver SUVmax 7.4, image 150.", dict(suv_max=7.4, site="liver", axial_slice=150)),
    ("Pylarify-avid left external iliac node (PSMA-RADS 4), SUVmax 18.2, image 240.",
     dict(suv_max=18.2, axial_slice=240, tracer="PSMA", lesion_count=1)),
    ("Left breast mass, SUVmax 9.1 (series 2 image 66) and left axillary node, SUVmax 4.3 (series 2 image 71).",
     dict(suv_max=9.1, axial_slice=66, series=2, lesion_count=2, site="left breast")),
]


@pytest.mark.parametrize("text, expected", TABLE, ids=[t[:40] for t, _ in TABLE])
def test_realistic_sentences(text, expected):
    d = parse_finding(text).to_dict()
    assert {k: d[k] for k in expected} == expected


def test_index_lesion_is_flagged_when_a_multi_lesion_sentence_singles_one_out():
    p = parse_finding("Multiple FDG-avid left axillary nodes, the largest 2.1 cm with SUVmax 9.3 (image 104).")
    assert p.lesion_count == 2 and p.index_lesion
    assert not parse_finding("Two left axillary nodes with SUVmax 5.1 and 6.2.").index_lesion


def test_to_dict_has_exactly_the_design_fields():
    d = parse_finding("FDG-avid left axillary node, SUVmax 7.1, image 104").to_dict()
    assert list(d) == ["text", "suv_max", "suv_prior", "axial_slice", "series", "size_mm", "laterality", "site",
                       "tracer", "negative", "lesion_count"]
    assert isinstance(parse_finding("x node"), ParsedFinding)


def test_public_api_reaches_the_parser():
    assert petar.grounding.parse_finding is parse_finding


# ---------------------------------------------------------------- encoder text
@pytest.mark.parametrize("text, expected", [
    ("FDG-avid left axillary node measuring 1.4 cm, SUVmax 7.1 (series 4, image 104).",
     "FDG-avid left axillary node measuring 1.4 cm, SUVmax."),
    ("SUVmax has increased from 5.2 to 7.4 in the right lower lobe nodule (3:231).",
     "SUVmax has increased in the right lower lobe nodule."),
    ("Two left axillary nodes with SUVmax 5.1 (image 100) and 6.2 (image 104), 1.2 x 0.8 cm.",
     "Two left axillary nodes with SUVmax, 1.2 x 0.8 cm."),
    ("Right adrenal nodule, SUVmax 7.4 (liver SUVmean 2.1), coronal image 40.",
     "Right adrenal nodule, SUVmax (liver SUVmean)."),
    ("No FDG-avid lymphadenopathy.", "No FDG-avid lymphadenopathy."),
])
def test_text_for_encoder(text, expected):
    assert text_for_encoder(text) == expected


# ---------------------------------------------------------------- bad input, standalone use
@pytest.mark.parametrize("text", ["", "   \n\t ", None])
def test_empty_text_is_an_input_error(text):
    with pytest.raises(petar.InputError, match="the finding text is empty: type or paste a report sentence"):
        parse_finding(text)
    with pytest.raises(petar.InputError):
        text_for_encoder(text)


def test_parser_loads_by_path_with_the_standard_library_only():
    path = Path(petar.__file__).parent / "grounding" / "parser.py"
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('petar_parser', {str(path)!r})\n"
            "mod = sys.modules['petar_parser'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "p = mod.parse_finding('FDG-avid left axillary node, SUVmax 7.1 (series 4, image 104)')\n"
            "assert (p.suv_max, p.axial_slice, p.series) == (7.1, 104, 4)\n"
            "try:\n    mod.parse_finding(' ')\nexcept ValueError as e:\n    assert 'empty' in str(e)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('petar', 'numpy', 'SimpleITK', 'torch'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
