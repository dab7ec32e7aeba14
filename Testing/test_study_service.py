"""Reading a study through the service: the same session methods, images as downloaded local files, no server paths."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from petar.errors import InputError  # noqa: E402
from petar.io import read_mask, read_pet, read_volume  # noqa: E402
from petar.service import Client, ServiceInputError  # noqa: E402
from petar.service.server import ServerThread, create_app  # noqa: E402
from petar.study import Study  # noqa: E402

TOKEN = "study-token-0123456789"


@pytest.fixture(scope="module")
def served_study(tmp_path_factory, small_phantom):
    root = tmp_path_factory.mktemp("root")
    folder = root / "study"
    folder.mkdir()
    small_phantom.write(folder)
    cases = [{"case_id": f"c{i}", "pet": "pet.nii.gz", "ct": "ct.nii.gz", "mask": "lesions.nii.gz", "label": i + 1,
              "texts": {"reference": f"Hypermetabolic focus {i}, SUVmax {i}.5", "petar": f"FDG-avid node {i}"}}
             for i in range(3)]
    (folder / "manifest.json").write_text(json.dumps({"cases": cases}))
    Study.create(folder / "study.sqlite", folder / "manifest.json", ["r1", "r2"]).close()
    srv = ServerThread(create_app(token=TOKEN, data_root=root)).start()
    yield srv, folder
    srv.stop()


def test_remote_session_reads_rates_and_resumes_like_a_local_one(served_study):
    srv, folder = served_study
    with Client(srv.url, token=TOKEN, timeout=60) as client:
        s = client.study_session("study/study.sqlite", "r1")
        assert s.design == "paired" and s.slots == ("A", "B") and s.progress() == (0, 3)
        item = s.next_item()
        local = Study.open(folder / "study.sqlite")
        expected = local.session("r1").next_item()
        assert (item.position, item.case_id, item.label, item.texts) == (expected.position, expected.case_id,
                                                                          expected.label, expected.texts)
        assert "[#]" in " ".join(item.texts.values())
        pet = read_pet(folder / "pet.nii.gz")
        assert np.array_equal(read_pet(item.pet).array, pet.array)
        assert np.array_equal(read_volume(item.ct).array, read_volume(folder / "ct.nii.gz").array)
        assert np.array_equal(read_mask(item.mask, pet).array, read_mask(folder / "lesions.nii.gz", pet).array)
        assert str(folder) not in json.dumps(item.to_dict())          # the server's paths never reach the reader
        s.rate(item, {"A": {"anatomy": 5, "interpretation": 4, "utility": 4},
                      "B": {"anatomy": 2, "interpretation": 2, "utility": 1}}, preference="A", seconds=17.0)
        assert s.progress() == (1, 3) and s.saved(item)["preference"] == "A"
        assert local.session("r1").saved(expected)["seconds"] == 17.0          # committed in the same database
        assert s.next_item().position == 2
        with pytest.raises(InputError, match="must be a whole number 1–5, not 9"):
            s.rate(s.next_item(), {"A": {"anatomy": 9, "interpretation": 4, "utility": 4},
                                   "B": {"anatomy": 2, "interpretation": 2, "utility": 1}}, preference="A")
        tmp = Path(item.pet).parent
        s.close()
        assert not tmp.exists()
        local.close()


def test_remote_errors_name_what_to_fix(served_study):
    srv, _ = served_study
    with Client(srv.url, token=TOKEN, timeout=60) as client:
        with pytest.raises(InputError, match="reader 'x' is not in this study; readers: r1, r2"):
            client.study_session("study/study.sqlite", "x")
        with pytest.raises(ServiceInputError, match="outside the server's data root"):
            client.study_session("../elsewhere.sqlite", "r1")
        with pytest.raises(InputError, match="not found; create it"):
            client.study_session("study/none.sqlite", "r1")
