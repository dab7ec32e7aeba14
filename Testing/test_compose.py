"""Model text → finding with measured numbers: fields parsed, every model number replaced and recorded."""
import re

import pytest

from petar.lesion.measure import LesionMeasurement
from petar.report.compose import compose, parse_fields


@pytest.fixture
def m():
    return LesionMeasurement(label=2, suv_max=8.43, suv_peak=6.9, suv_mean=4.2, suv_sd=1.1, mtv_ml=3.2, tlg=13.4,
                             voxels=119, diameter_long_mm=19.2, diameter_short_mm=14.0, centroid_lps=[0, 0, 0],
                             centroid_ras=[0, 0, 0], hottest_lps=[0, 0, 0], hottest_ras=[0, 0, 0],
                             hottest_ijk=[0, 0, 0], axial_slice=142, slice_origin="superior", components=1)


def _numbers(text):
    return set(re.findall(r"\d+(?:\.\d+)?", text))


MEASURED = {"8.4", "19", "14", "142"}


def test_structured_fields_are_parsed_in_any_layout():
    for text in ("Region: Chest\nAnatomy: right lower lobe\nFinding: FDG-avid nodule\nSUV Max: 7.1\nAxial Slice: 104",
                 "Region: Chest; Anatomy: right lower lobe; Finding: FDG-avid nodule; SUV Max: 7.1; Axial Slice: 104",
                 "- Finding: FDG-avid nodule\n- Axial slice: 104\n- Anatomy: right lower lobe\n- SUVmax: 7.1\n"
                 "- Region: Chest"):
        f = parse_fields(text)
        assert f == {"region": "Chest", "anatomy": "right lower lobe", "finding": "FDG-avid nodule",
                     "suv_max": "7.1", "axial_slice": "104"}, text


def test_structured_output_keeps_the_words_and_replaces_the_numbers(m):
    c = compose("Region: Chest\nAnatomy: right lower lobe\nFinding: FDG-avid pulmonary nodule\nSUV Max: 7.1\n"
                "Axial Slice: 104", m)
    assert c.finding.startswith("FDG-avid pulmonary nodule — right lower lobe, Chest: SUVmax 8.4, 19 × 14 mm")
    assert "axial image 142" in c.finding
    assert c.replaced == {"suv_max": [7.1, 8.43], "axial_slice": [104, 142]}
    assert _numbers(c.finding) <= MEASURED


@pytest.mark.parametrize("text, keys", [
    ("FDG-avid left axillary node measuring 1.4 cm, SUVmax 7.1 (series 4, image 104).", {"suv_max", "size", "axial_slice"}),
    ("Intensely avid mass with SUV max of 15.2 on axial image 77 in the pelvis", {"suv_max", "axial_slice"}),
    ("Hypermetabolic focus measuring 2.1 x 1.5 cm with max SUV 12.3", {"suv_max", "size"}),
    ("Focal uptake (SUVmax 5.5) in the right lobe (3:104).", {"suv_max", "axial_slice"}),
    ("Mildly avid node, SUVpeak 3.3, slice 99", {"suv_peak", "axial_slice"}),
])
def test_free_text_numbers_never_survive(m, text, keys):
    c = compose(text, m)
    assert set(c.replaced) == keys
    assert _numbers(c.finding) <= MEASURED, c.finding
    assert "  " not in c.finding and " ," not in c.finding and "()" not in c.finding


def test_text_without_numbers_or_fields_gets_the_measured_tail(m):
    c = compose("hypermetabolic lesion in the liver", m)
    assert c.finding.startswith("Hypermetabolic lesion in the liver: SUVmax 8.4")
    assert c.replaced == {} and c.fields == {}
