"""Smoke tests that EXECUTE the module files' Widget/Logic code under the strict fakes of Testing/slicer/fake_slicer.py.

They catch what the static checks cannot: a wrong attribute on our own objects, a wrong call into PETARReportLib /
PETARStudyLib / petar, state-machine misuse, exceptions in setup(). The fakes are installed only inside each test
(`fake` fixture) and removed afterwards. Worker-thread jobs run for real; the QTimer is fired by hand.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import slicer_paths  # noqa: F401  (sys.path for the module folders)

import petar
from fake_slicer import FakeSlicer, QWidget

SHAPE, SPACING = (60, 40, 40), (6.0, 6.0, 6.0)


@pytest.fixture
def fake():
    before = {name: sys.modules.get(name) for name in FakeSlicer.FAKED + FakeSlicer.IMPORTED}
    with FakeSlicer() as f:
        yield f
    assert {name: sys.modules.get(name) for name in before} == before      # nothing fake left behind


@pytest.fixture(scope="module")
def phantom():
    return petar.make_phantom(seed=1, shape=SHAPE, spacing=SPACING)


def _drain(widget, timeout=60):
    """Wait for the worker, then fire the widget's QTimer as Qt would (the timer must be running)."""
    widget.runner.wait(timeout)
    assert widget.timer.fire(), "the job's timer was not started"
    assert not widget.runner.running


# ---- PETARStudy --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study_db(tmp_path_factory, phantom):
    from petar.study import Study

    folder = tmp_path_factory.mktemp("smoke_study")
    phantom.write(folder)
    cases = [{"case_id": f"c{k:03d}", "pet": "pet.nii.gz", "ct": "ct.nii.gz", "mask": "lesions.nii.gz",
              "label": int(phantom.truth[k]["label"]), "tracer": "FDG",
              "texts": {"reference": f"Reference finding {k}.", "petar": f"Model finding {k}."}} for k in range(2)]
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"cases": cases}), encoding="utf-8")
    db = folder / "study.db"
    Study.create(db, manifest, readers=["r1", "r2"], design="paired", mask_numbers=True, seed=0).close()
    return str(db)


def _rate(ui, score, preference):
    for slot in "AB":
        for scale in ("anatomy", "interpretation", "utility"):
            getattr(ui, f"score{slot}_{scale}_{score}").click()
    {"A": ui.preferA, "tie": ui.preferTie, "B": ui.preferB}[preference].click()


def test_study_widget_setup(fake):
    w = fake.widget("PETARStudy")
    assert w.ui.progressLabel.text == "No study open"
    assert not w.ui.saveNextButton.enabled and not w.ui.previousButton.enabled
    assert not w.ui.textAGroupBox.enabled                  # no case: the form is greyed
    assert not w.ui.urlEdit.visible                        # database source: no URL field
    w.ui.sourceCombo.currentText = "service"
    assert w.ui.urlEdit.visible
    w.ui.openButton.click()                                # nothing chosen: says why, opens nothing
    assert fake.errors and w.reader is None
    w.cleanup()


def test_study_rate_previous_resume(fake, study_db):
    from petar.study import Study

    w = fake.widget("PETARStudy")
    w.ui.dbPathEdit.currentPath = study_db                 # lists the readers
    assert [w.ui.readerCombo.itemText(i) for i in range(w.ui.readerCombo.count())] == ["r1", "r2"]
    w.ui.readerCombo.currentText = "r1"
    w.ui.openButton.click()
    assert w.state.busy and not w.ui.saveNextButton.enabled   # loading the first case
    _drain(w)
    assert fake.errors == []
    assert w.ui.progressLabel.text == "Case 1 of 2 · 0 rated"
    assert w.ui.textAEdit.plainText and w.ui.textBEdit.plainText and w.ui.textBGroupBox.visible
    assert fake.scene.GetFirstNodeByName("Study PET") is not None
    assert fake.scene.GetFirstNodeByName("Study lesion").GetSegmentation().GetNumberOfSegments() == 1
    assert w._formFromGui().is_blank()

    w.ui.saveNextButton.click()                            # incomplete: stays, says what is missing
    assert w.ui.statusLabel.text.startswith("Missing"), w.ui.statusLabel.text
    _rate(w.ui, 4, "B")
    first = w.reader.item
    w.ui.saveNextButton.click()
    _drain(w)
    assert w.ui.progressLabel.text == "Case 2 of 2 · 1 rated"
    assert w._formFromGui().is_blank()                     # nothing carried over
    with Study.open(study_db) as study:
        saved = study.session("r1").saved(first)
    assert saved["preference"] == "B" and saved["scores"]["A"]["anatomy"] == 4

    w.ui.previousButton.click()                            # back to case 1, prefilled
    _drain(w)
    form = w._formFromGui()
    assert w.ui.progressLabel.text.startswith("Case 1 of 2")
    assert (form.scores["B"]["utility"], form.preference) == (4, "B")
    assert w.ui.scoreA_anatomy_4.checked and w.ui.preferB.checked

    w.ui.cannotAssessCheckBox.click()                      # greys the scores
    assert not w.ui.scoreA_anatomy_1.enabled and w.ui.reasonEdit.enabled
    w.ui.cannotAssessCheckBox.click()
    w.cleanup()

    w2 = fake.widget("PETARStudy")                         # reopen: settings kept, resume at case 2
    assert w2.ui.dbPathEdit.currentPath == study_db and w2.ui.readerCombo.currentText == "r1"
    w2.ui.openButton.click()
    _drain(w2)
    assert w2.ui.progressLabel.text == "Case 2 of 2 · 1 rated"
    _rate(w2.ui, 3, "tie")
    w2.ui.saveNextButton.click()
    assert not w2.state.busy and w2.ui.statusLabel.text    # done: no load, a closing message
    assert not w2.ui.saveNextButton.enabled
    with Study.open(study_db) as study:
        assert study.session("r1").progress() == (2, 2)
    assert fake.errors == []
    w2.cleanup()


def test_study_scene_close_while_loading(fake, study_db):
    w = fake.widget("PETARStudy")
    w.ui.dbPathEdit.currentPath = study_db
    w.ui.readerCombo.currentText = "r2"
    w.ui.openButton.click()
    assert w.state.busy
    fake.scene.Clear()                                     # abandons the load, shows the texts without images
    assert not w.state.busy and w._loading is None
    assert w.ui.textAEdit.plainText and w.ui.saveNextButton.enabled
    w.ui.reloadButton.click()
    _drain(w)
    assert fake.scene.GetFirstNodeByName("Study PET") is not None
    w.cleanup()


# ---- PETARGrounding ----------------------------------------------------------------------------------------------
def _volumes(fake, phantom):
    from PETARReportLib import mrml

    return mrml.node_from_volume(phantom.pet, "PET"), mrml.node_from_volume(phantom.ct, "CT")


def test_grounding_localize_found_and_ambiguous(fake, phantom):
    w = fake.widget("PETARGrounding")
    pet, ct = _volumes(fake, phantom)
    w.ui.petSelector.setCurrentNode(pet)
    w.ui.ctSelector.setCurrentNode(ct)
    assert w.parameters.node.pet is pet                    # the GUI drives the parameter node
    assert w.ui.engineCombo.currentText == "rule"

    truth = phantom.truth[0]
    w.ui.findingEdit.plainText = f"FDG-avid {truth['name']}, SUVmax {truth['suv_max']:.1f}, " \
                                 f"image {truth['axial_slice']}"
    w.ui.localizeButton.click()
    assert w.state.busy and w.ui.localizeButton.text == "Cancel" and not w.ui.findingEdit.enabled
    _drain(w)
    assert fake.errors == [], fake.errors
    assert w.result["status"] == "found", w.result
    segmentation = w.ui.segmentationSelector.currentNode()
    assert segmentation is not None                        # a new segmentation was made and selected
    seg = segmentation.GetSegmentation()
    assert seg.GetNumberOfSegments() == 1
    sid = seg.GetNthSegmentID(0)
    array = fake.slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, sid, pet)
    assert int(array.sum()) > 0 and fake.scene._jumps      # views centred on it
    assert w.ui.resultText.plainText and w.ui.localizeButton.text == "Localize"

    w.ui.findingEdit.plainText = "FDG-avid node"             # ambiguous: candidates, no segment yet
    w.ui.localizeButton.click()
    _drain(w)
    assert fake.errors == [], fake.errors
    assert w.ui.candidatesList.count() > 1, w.result
    assert seg.GetNumberOfSegments() == 1
    w.ui.candidatesList.currentRow = 1
    assert w.ui.acceptCandidateButton.enabled
    w.ui.acceptCandidateButton.click()                     # in-process: segmented at once
    assert fake.errors == [], fake.errors
    assert seg.GetNumberOfSegments() == 2
    new = fake.slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, seg.GetNthSegmentID(1), pet)
    assert int(new.sum()) > 0

    fake.scene.Clear()                                     # scene close: result and candidates cleared
    assert w.candidates is None and w.ui.candidatesList.count() == 0 and not w.ui.acceptCandidateButton.enabled
    w.cleanup()


def test_grounding_refuses_without_pet(fake):
    w = fake.widget("PETARGrounding")
    w.ui.findingEdit.plainText = "FDG-avid left axillary node"
    w.ui.localizeButton.click()
    assert fake.errors and not w.state.busy
    w.cleanup()


# ---- PETARReport -------------------------------------------------------------------------------------------------
def test_report_template_generate(fake, phantom, tmp_path):
    from PETARReportLib import mrml

    pet, ct = _volumes(fake, phantom)                      # before setup: the parameter node picks the PET
    w = fake.widget("PETARReport")
    assert w.ui.petSelector.currentNode() is pet
    w.ui.ctSelector.setCurrentNode(ct)
    segmentation = mrml.new_segmentation("lesions", pet)
    label = int(phantom.truth[0]["label"])
    mask = petar.Volume.from_array((np.asarray(phantom.lesions.array) == label).astype(np.uint8), like=phantom.pet)
    sid = mrml.add_segment(segmentation, mask, "lesion one", pet)
    w.ui.segmentationSelector.setCurrentNode(segmentation)
    assert w.ui.segmentCombo.findData(sid) >= 0
    w.ui.segmentCombo.currentIndex = w.ui.segmentCombo.findData(sid)

    w.ui.generateButton.click()
    assert w.state.busy and w.ui.generateButton.text == "Cancel"
    _drain(w)
    assert fake.errors == [], fake.errors
    assert w.report["engine"] == "template" and len(w.report["findings"]) == 1
    assert "lesion one" in w.ui.findingsEdit.plainText, w.ui.findingsEdit.plainText
    assert w.ui.findingsTable.rowCount() == 1 and w.ui.findingsTable.item(0, 0).text() == "lesion one"
    w.ui.findingsTable.emit("cellClicked(int,int)", 0, 1)
    assert fake.scene._jumps

    fake.save_path = str(tmp_path / "findings.json")
    w.ui.exportJsonButton.click()
    assert json.loads((tmp_path / "findings.json").read_text(encoding="utf-8"))["engine"] == "template"
    fake.scene.Clear()
    assert w.report is None and w.ui.findingsTable.rowCount() == 0
    w.cleanup()


def test_report_click_lesion(fake, phantom):
    pet, _ct = _volumes(fake, phantom)
    w = fake.widget("PETARReport")
    points = fake.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "click")
    points.AddControlPoint(*[float(v) for v in phantom.truth[0]["center_ras"]])
    w.ui.clickPointSelector.setCurrentNode(points)
    w.ui.clickSegmentButton.click()
    assert w.state.busy and not w.ui.clickSegmentButton.enabled
    _drain(w)
    assert fake.errors == [], fake.errors
    segmentation = w.ui.segmentationSelector.currentNode()
    assert segmentation is not None and segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert w.ui.segmentCombo.currentData == segmentation.GetSegmentation().GetNthSegmentID(0)
    w.cleanup()


# ---- the fakes themselves ----------------------------------------------------------------------------------------
def test_fakes_are_strict_and_removed(fake):
    w = QWidget()
    with pytest.raises(AttributeError):
        w.visble = False
    with pytest.raises(AttributeError):
        w.connect("nosuchsignal()", print)
    with pytest.raises(TypeError):                         # bound to the real signature from the API index
        fake.slicer.util.errorDisplay()
    assert sys.modules["slicer"] is fake.slicer


def test_fake_mrml_methods_exist_in_the_api_index():
    import fake_slicer as F
    from slicer_api_index import vtk_members

    fakes = {c.CLASS: c for c in vars(F).values() if isinstance(c, type) and hasattr(c, "CLASS")}
    fakes.update({"vtkSegmentation": F.vtkSegmentation, "vtkSegment": F.vtkSegment, "vtkMRMLScene": F.vtkMRMLScene})
    for name, cls in fakes.items():
        methods = {m for m in vars(cls) if m[:1].isupper() and callable(getattr(cls, m))}
        assert not methods - vtk_members(name), (name, methods - vtk_members(name))


def test_fakes_do_not_leak():
    with FakeSlicer() as f:
        f.import_module("PETARStudy")
        assert "PETARReportLib.mrml" in sys.modules
    for name in FakeSlicer.FAKED + FakeSlicer.IMPORTED:
        assert name not in sys.modules, name
    import PETARReportLib
    assert not hasattr(PETARReportLib, "mrml")
