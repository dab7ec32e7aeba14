"""PETAR engine end to end with the official tiny checkpoint: phantom → views → batched generation → findings
whose numbers are the measured ones; batch == singles; streaming; cancellation; CLI; missing weights → exit 3."""
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import petar  # noqa: E402

TINY = Path(__file__).parent / "data" / "petar_tiny_a"


@pytest.fixture(scope="module")
def tiny():
    return petar.load_petar(str(TINY), device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def result(small_phantom, tiny):
    ph = small_phantom
    return petar.report(ph.pet, ph.ct, ph.lesions, engine="petar", model=tiny, max_new_tokens=10)


def test_every_lesion_gets_a_finding_with_measured_numbers(result, small_phantom):
    assert [f.label for f in result.findings] == [t["label"] for t in small_phantom.truth]
    for f in result.findings:
        m = f.measurement
        assert f"SUVmax {m.suv_max:.1f}" in f.text and f"axial image {m.axial_slice}" in f.text
        assert 1 <= f.tokens <= 10 and f.raw_text is not None
        for key, (model_value, measured) in f.replaced.items():
            assert measured in (round(m.suv_max, 2), round(m.suv_peak, 2), m.axial_slice,
                                f"{m.diameter_long_mm:.0f} × {m.diameter_short_mm:.0f} mm"), key


def test_json_has_the_documented_fields(result):
    d = result.to_dict()
    assert d["engine"] == "petar" and d["device"] == "cpu" and d["dtype"] == "float32"
    assert d["model"]["id"] == str(TINY)
    f = d["findings"][0]
    assert set(f) >= {"label", "finding", "raw_text", "fields", "replaced", "measurement", "timing_ms", "tokens"}
    assert set(f["timing_ms"]) >= {"preprocess", "vision", "prefill", "decode"}


def test_batch_equals_one_by_one(result, small_phantom, tiny):
    ph = small_phantom
    for f in result.findings[:3]:
        single = petar.report(ph.pet, ph.ct, ph.lesions, label=f.label, engine="petar", model=tiny,
                              max_new_tokens=10)
        assert single.findings[0].token_ids == f.token_ids
        assert single.findings[0].raw_text == f.raw_text


def test_streaming_callback_and_cancellation(small_phantom, tiny):
    ph = small_phantom
    seen = []
    petar.report(ph.pet, ph.ct, ph.lesions, label=1, engine="petar", model=tiny, max_new_tokens=6,
                 on_token=lambda label, tok, text: seen.append((label, tok, text)))
    assert len(seen) >= 1 and all(s[0] == 1 for s in seen)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 2

    res = petar.report(ph.pet, ph.ct, ph.lesions, label=1, engine="petar", model=tiny, max_new_tokens=50,
                       should_stop=stop)
    assert res.findings[0].tokens <= 3


def test_models_are_loaded_once_per_process():
    a = petar.load_petar(str(TINY), device="cpu", dtype="fp32")
    b = petar.load_petar(str(TINY), device="cpu", dtype="fp32")
    assert a is b


def test_cli_report_with_the_petar_engine(cli, phantom_files, tmp_path):
    f = phantom_files
    r = cli("report", "--engine", "petar", "--model", TINY, "--device", "cpu", "--dtype", "fp32",
            "--max-new-tokens", "6", "--pet", f / "pet.nii.gz", "--ct", f / "ct.nii.gz",
            "--mask", f / "lesions.nii.gz", "--label", "2", "--json", tmp_path / "r.json")
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "r.json").read_text())
    (finding,) = doc["findings"]
    assert finding["label"] == 2 and re.search(r"SUVmax \d+\.\d", finding["finding"])


def test_missing_weights_exit_3_with_the_command(cli, phantom_files, tmp_path, monkeypatch):
    monkeypatch.setenv("PETAR_HOME", str(tmp_path / "empty"))
    f = phantom_files
    r = cli("report", "--engine", "petar", "--pet", f / "pet.nii.gz", "--ct", f / "ct.nii.gz",
            "--mask", f / "lesions.nii.gz", "--json", tmp_path / "r.json")
    assert r.code == 3
    assert "petar models pull laynad/PETAR-4B" in r.err
    assert not (tmp_path / "r.json").exists()


def test_pet_not_in_suv_is_refused_before_the_model_runs(small_phantom, tiny):
    ph = small_phantom
    bq = petar.Volume.from_array(ph.pet.array * 5000.0, like=ph.pet)
    with pytest.raises(petar.InputError, match="Bq/mL"):
        petar.report(bq, ph.ct, ph.lesions, engine="petar", model=tiny, max_new_tokens=2)


def test_petar_engine_needs_the_ct(small_phantom, tiny):
    ph = small_phantom
    with pytest.raises(petar.InputError, match="needs the CT"):
        petar.report(ph.pet, None, ph.lesions, engine="petar", model=tiny)
