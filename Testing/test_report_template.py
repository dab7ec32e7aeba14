"""Template findings: every number from the measurement, side and region right on the phantom, honest wording."""
import re

import pytest

import petar
from petar import InputError


@pytest.fixture(scope="module")
def result(small_phantom):
    return petar.report(small_phantom.pet, small_phantom.ct, small_phantom.lesions)


def test_petar_report_is_callable_and_a_module(small_phantom):
    assert callable(petar.report)
    assert petar.report.ENGINES == ("template", "petar")
    assert callable(petar.report.petar_views) and callable(petar.load_petar)


def test_one_finding_per_lesion_with_measured_numbers(result, small_phantom):
    assert [f.label for f in result.findings] == [t["label"] for t in small_phantom.truth]
    for f in result.findings:
        m = f.measurement
        assert f"SUVmax {m.suv_max:.1f}" in f.text
        assert f"SUVpeak {m.suv_peak:.1f}" in f.text
        assert f"axial image {m.axial_slice} of {small_phantom.pet.shape[0]}" in f.text
        assert "Region estimated from CT." in f.text


def test_sides_and_regions_agree_with_the_phantom_truth(result, small_phantom):
    region_of = {"chest": "chest", "head_neck": "head_neck", "abdomen": "abdomen_pelvis", "pelvis": "abdomen_pelvis"}
    truth = {t["label"]: t for t in small_phantom.truth}
    for f in result.findings:
        t = truth[f.label]
        assert f.laterality == t["laterality"], (t["name"], f.site)
        assert f.region == region_of[t["region"]], (t["name"], f.site)
        assert f.measurement.suv_max == pytest.approx(t["suv_max"])
        assert f.measurement.axial_slice == t["axial_slice"]
    lung = [f for f in result.findings if "lung nodule" in truth[f.label]["name"]]
    assert lung and all(re.search(r"\bright lung\b", f.site) for f in lung)


def test_without_ct_the_region_is_not_guessed(small_phantom):
    res = petar.report(small_phantom.pet, None, small_phantom.lesions, label=1)
    (f,) = res.findings
    assert f.region == "unknown" and "Region not estimated (no CT)." in f.text
    assert f.laterality == small_phantom.truth[0]["laterality"]


def test_to_dict_carries_text_and_measurements(result):
    d = result.to_dict()
    assert d["engine"] == "template" and d["slice_origin"] == "superior"
    assert d["text"].count("\n") == len(d["findings"]) - 1
    assert all("suv_peak" in f["measurement"] for f in d["findings"])


def test_unknown_engine_and_options_are_input_errors(small_phantom):
    with pytest.raises(InputError, match="available here: template, petar"):
        petar.report(small_phantom.pet, small_phantom.ct, small_phantom.lesions, engine="gpt")
    with pytest.raises(InputError, match="max_new_tokens"):
        petar.report(small_phantom.pet, small_phantom.ct, small_phantom.lesions, max_new_tokens=5)
