"""PETARStudy: the physician reader panel of a blinded reader study (texts A/B rated on three 5-point scales).

The reader picks a study database (made by `petar study create`) or a petar service, and a reader id; each case
loads as PET on CT with the lesion outlined and the views centred on it, the texts are shown as "Text A" / "Text B"
(nothing names their source), and Save & Next stores the rating with the time on case. PETARStudyLib holds the
Slicer-free logic (form, validation, navigation, timing; tested with pytest); PETARReportLib (the PETARReport
module, a declared dependency) the MRML adapters and the worker-thread runner that reads the images.
"""
import json
import os
import sys

import qt
import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


def _ensure_import_paths():
    """Source-tree use: the sibling PETARReport folder (PETARReportLib) and the repository root (petar)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in (os.path.join(root, "PETARReport"), root):
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)


_ensure_import_paths()

import PETARReportLib  # noqa: E402
import PETARStudyLib  # noqa: E402
from PETARReportLib import mrml  # noqa: E402
from PETARStudyLib import PREFERENCES, SCALES, SCORES, RatingForm  # noqa: E402

LIB_MODULES = ("reader", "case_images")
SLOTS = ("A", "B")


class PETARStudy(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PETAR Study")
        self.parent.categories = [_("Nuclear Medicine")]
        self.parent.dependencies = ["PETARReport"]
        self.parent.contributors = ["SlicerPETAR contributors"]
        self.parent.helpText = _("Reader study: open the study database (or a petar service) with your reader id, "
                                 "rate Text A and Text B of each case on the three scales, choose a preference, "
                                 "then Save & Next. Previous revisits a saved case; reopening resumes where you "
                                 "stopped.")
        self.parent.acknowledgementText = _("Studies are made with `petar study create`.")


class PETARStudyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.reader = None
        self._loading = None        # the Step whose case is loading (None: nothing, or a reload of the shown case)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PETARStudy.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PETARStudyLogic()
        from PETARReport import QSettingsBackend

        self.backend = QSettingsBackend()
        self.settings = PETARStudyLib.StudySettings.load(self.backend)
        self._buildButtonGroups()
        self.state = PETARReportLib.StateMachine(_("Reload images"))
        self.runner = PETARReportLib.EngineRunner()
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.runner.poll)
        self.jobs = PETARReportLib.JobControls(
            self.state, self.runner, self.timer, self.ui.reloadButton, self.ui.loadingBar, self.ui.statusLabel,
            busy_disabled=[self.ui.studyCollapsibleButton], progress_view=PETARStudyLib.loading_view,
            show_error=slicer.util.errorDisplay, failure_text=_("Could not load the case images: "))
        self.state.listeners.append(self._updateButtons)
        self._settingsToGui()
        self.ui.sourceCombo.connect("currentIndexChanged(int)", self._onSourceChanged)
        self.ui.dbPathEdit.connect("currentPathChanged(QString)", self._refreshReaders)
        self.ui.openButton.connect("clicked(bool)", self.onOpen)
        self.ui.saveNextButton.connect("clicked(bool)", self.onSaveNext)
        self.ui.previousButton.connect("clicked(bool)", self.onPrevious)
        self.ui.reloadButton.connect("clicked(bool)", self.onReloadImages)
        self.ui.cannotAssessCheckBox.connect("toggled(bool)", self._onCannotAssessToggled)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self._onSourceChanged()
        self._clearCase()
        self.jobs.on_state_changed()
        self._updateButtons()

    def cleanup(self):
        self.jobs.reset()
        self.removeObservers()
        if self.reader is not None:
            self.reader.close()

    def onReload(self):
        from PETARReport import reload_lib

        reload_lib(PETARStudyLib, LIB_MODULES)
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event):
        """The scene (and the case's nodes) go away: drop a running load; the texts and form stay."""
        self.jobs.reset()
        self.logic.forgetCase()
        step, self._loading = self._loading, None
        if step is not None:
            self._presentCase(step, _("Images not shown: press Reload images."))
        elif self.reader is not None and self.reader.item is not None:
            self.ui.statusLabel.text = _("The scene was closed: press Reload images to see the case again.")
        self._updateButtons()

    # ---- controls <-> plain data ---------------------------------------------------------------------------
    def _buildButtonGroups(self):
        """One exclusive group per (slot, scale) with ids 1..5, and one for the preference (ids 1..3)."""
        self._scoreGroups = {}
        for slot in SLOTS:
            for scale in SCALES:
                group = qt.QButtonGroup(self.parent)
                for value in SCORES:
                    group.addButton(getattr(self.ui, f"score{slot}_{scale}_{value}"), value)
                self._scoreGroups[(slot, scale)] = group
        self._preferenceGroup = qt.QButtonGroup(self.parent)
        for i, button in enumerate((self.ui.preferA, self.ui.preferTie, self.ui.preferB), start=1):
            self._preferenceGroup.addButton(button, i)

    @staticmethod
    def _setGroup(group, button_id):
        """Check `button_id`, or none when it is None (an exclusive group refuses to uncheck its last button)."""
        group.setExclusive(False)
        for button in group.buttons():
            button.setChecked(False)
        if button_id is not None and group.button(button_id) is not None:
            group.button(button_id).setChecked(True)
        group.setExclusive(True)

    def _formToGui(self, form):
        for (slot, scale), group in self._scoreGroups.items():
            self._setGroup(group, form.scores.get(slot, {}).get(scale))
        pref = form.preference
        self._setGroup(self._preferenceGroup, PREFERENCES.index(pref) + 1 if pref in PREFERENCES else None)
        self.ui.commentEdit.setPlainText(form.comment)
        self.ui.reasonEdit.text = form.reason
        self.ui.cannotAssessCheckBox.checked = form.cannot_assess
        self._onCannotAssessToggled(form.cannot_assess)

    def _formFromGui(self):
        slots = self.reader.slots if self.reader is not None else ()
        scores = {}
        for slot in slots:
            scores[slot] = {}
            for scale in SCALES:
                checked = self._scoreGroups[(slot, scale)].checkedId()
                scores[slot][scale] = checked if checked in SCORES else None
        pref = self._preferenceGroup.checkedId()
        return RatingForm(slots=slots, scores=scores,
                          preference=PREFERENCES[pref - 1] if 1 <= pref <= len(PREFERENCES) else None,
                          comment=self.ui.commentEdit.plainText,
                          cannot_assess=bool(self.ui.cannotAssessCheckBox.checked), reason=self.ui.reasonEdit.text)

    def _settingsToGui(self):
        s = self.settings
        self.ui.sourceCombo.currentText = s.source
        self.ui.dbPathEdit.currentPath = s.database
        self.ui.urlEdit.text = s.service_url
        self.ui.tokenEdit.text = s.service_token
        self._refreshReaders()
        self.ui.readerCombo.currentText = s.reader

    def _settingsFromGui(self):
        s = self.settings
        s.source = self.ui.sourceCombo.currentText
        s.database = self.ui.dbPathEdit.currentPath.strip()
        s.service_url = self.ui.urlEdit.text.strip()
        s.service_token = self.ui.tokenEdit.text.strip()
        s.reader = self.ui.readerCombo.currentText.strip()
        s.save(self.backend)
        return s.validate()

    # ---- study selection -----------------------------------------------------------------------------------
    def _onSourceChanged(self, index=None):
        service = self.ui.sourceCombo.currentText == "service"
        for widget in (self.ui.urlLabel, self.ui.urlEdit, self.ui.tokenLabel, self.ui.tokenEdit):
            widget.visible = service
        self._refreshReaders()

    def _refreshReaders(self, path=None):
        """Database file: list its readers (the combo stays editable; a non-study file only gives a status line)."""
        if self.ui.sourceCombo.currentText == "service":
            return
        path = self.ui.dbPathEdit.currentPath.strip()
        if not path or not os.path.isfile(path):
            return
        typed = self.ui.readerCombo.currentText
        try:
            readers = PETARStudyLib.study_readers(path)
        except Exception as exc:
            self.ui.statusLabel.text = PETARStudyLib.one_line(exc)
            return
        self.ui.readerCombo.clear()
        for reader in readers:
            self.ui.readerCombo.addItem(reader)
        self.ui.readerCombo.currentText = typed if typed in readers else (readers[0] if len(readers) == 1 else "")

    def onOpen(self):
        if self.state.busy:
            return
        ok, reason = self._settingsFromGui()
        if not ok:
            slicer.util.errorDisplay(reason)
            return
        if self.reader is not None:
            self.reader.close()
        self.logic.clearCase()
        self._clearCase()
        self.reader = PETARStudyLib.ReaderPanelLogic(self.settings.opener())
        self._showStep(self.reader.start())

    # ---- navigation ----------------------------------------------------------------------------------------
    def onSaveNext(self):
        if self.reader is None or self.state.busy:
            return
        self._showStep(self.reader.save_and_next(self._formFromGui()))

    def onPrevious(self):
        if self.reader is None or self.state.busy:
            return
        form = self._formFromGui() if self.reader.item is not None else None
        self._showStep(self.reader.previous(form))

    def onReloadImages(self):
        """Idle: load the shown case's images again (the form and the clock are kept). Busy: cancel the load."""
        if not self.jobs.click():
            return
        if self.reader is None or self.reader.item is None:
            return
        self._startLoading(self.reader.item, None)

    def _showStep(self, step):
        """Apply a ReaderPanelLogic step. On "invalid" and "error" the form on screen is left exactly as it is."""
        if step.kind == "invalid":
            self.ui.statusLabel.text = step.message
            return
        if step.kind == "error":
            self.ui.statusLabel.text = step.message
            self._updateProgress()
            self._updateButtons()
            slicer.util.errorDisplay(step.message)
            return
        self.logic.clearCase()
        self._clearCase()
        self._updateProgress()
        if step.kind == "done":
            self.ui.statusLabel.text = step.message
            self._updateButtons()
            return
        self._startLoading(step.item, step)

    def _startLoading(self, item, step):
        self._loading = step
        try:
            self.jobs.start(PETARStudyLib.case_job(item), on_finished=lambda images: self._onCaseImages(images, step),
                            on_cancelled=lambda: self._onLoadCancelled(step))
        except Exception as exc:       # the runner refused (a load still running): show the case without images
            self._loading = None
            self.jobs.fail(exc)
            if step is not None:
                self._presentCase(step, _("Images not shown: press Reload images."))

    def _onCaseImages(self, images, step):
        self._loading = None
        shown = step.item if step is not None else (self.reader.item if self.reader is not None else None)
        if shown is None or images.position != shown.position:
            return
        note = ""
        if images.error:
            slicer.util.errorDisplay(_("Could not load the case images: ") + images.error)
            note = _("Images not shown: press Reload images, or tick 'Cannot assess'.")
        else:
            with slicer.util.tryWithErrorDisplay(_("Could not show the case images.")):
                self.logic.showCase(images)
            if images.empty:
                note = _("The lesion mask of this case is empty.")
        if step is not None:
            self._presentCase(step, note)
        else:
            self.ui.statusLabel.text = note
            self._updateButtons()

    def _onLoadCancelled(self, step):
        self._loading = None
        if step is not None:
            self._presentCase(step, _("Loading cancelled: press Reload images to see the images."))
        self._updateButtons()

    def _presentCase(self, step, note=""):
        """Texts and the (empty, drafted or saved) form on screen; time on case starts now."""
        item = step.item
        paired = "B" in item.texts
        self.ui.textAEdit.setPlainText(item.texts.get("A", ""))
        self.ui.textBEdit.setPlainText(item.texts.get("B", ""))
        self.ui.textBGroupBox.visible = paired
        self.ui.preferenceGroupBox.visible = paired
        self._formToGui(step.form)
        self._setFormEnabled(True)
        self.ui.statusLabel.text = " ".join(t for t in (step.message, note) if t)
        self._updateProgress()
        self._updateButtons()
        self.reader.case_loaded()

    def _clearCase(self):
        self.ui.textAEdit.setPlainText("")
        self.ui.textBEdit.setPlainText("")
        self._formToGui(RatingForm.empty(SLOTS))
        self._setFormEnabled(False)

    def _setFormEnabled(self, enabled):
        for widget in (self.ui.textAGroupBox, self.ui.textBGroupBox, self.ui.preferenceGroupBox,
                       self.ui.commentEdit, self.ui.cannotAssessCheckBox):
            widget.enabled = enabled
        self.ui.reasonEdit.enabled = enabled and bool(self.ui.cannotAssessCheckBox.checked)
        if enabled:
            self._onCannotAssessToggled(bool(self.ui.cannotAssessCheckBox.checked))

    def _onCannotAssessToggled(self, checked):
        """Scores and preference stay on screen but greyed: 'cannot assess' sends none of them."""
        for group in self._scoreGroups.values():
            for button in group.buttons():
                button.setEnabled(not checked)
        self.ui.preferenceGroupBox.enabled = not checked
        self.ui.reasonEdit.enabled = bool(checked)

    def _updateProgress(self):
        if self.reader is None:
            self.ui.progressLabel.text = _("No study open")
            return
        rated, total = self.reader.progress()
        self.ui.progressLabel.text = self.reader.progress_text()
        self.ui.progressBar.maximum = max(1, total)
        self.ui.progressBar.value = min(rated, max(1, total))

    def _updateButtons(self, state=None):
        busy = self.state.busy
        case_shown = self.reader is not None and self.reader.item is not None and self._loading is None
        self.ui.openButton.enabled = not busy
        self.ui.saveNextButton.enabled = case_shown and not busy
        self.ui.previousButton.enabled = self.reader is not None and self.reader.can_previous and not busy
        self.ui.reloadButton.enabled = busy and self.state.button_enabled or (case_shown and not busy)


class PETARStudyLogic(ScriptedLoadableModuleLogic):
    """Shows a case's images; removes only the nodes it added for the previous case (never the user's nodes)."""

    PET_NAME, CT_NAME, LESION_NAME = "Study PET", "Study CT", "Study lesion"

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._nodeIds = []

    def forgetCase(self):
        """The scene was closed: the case's nodes are gone already."""
        self._nodeIds = []

    def clearCase(self):
        for node_id in self._nodeIds:
            node = slicer.mrmlScene.GetNodeByID(node_id)
            if node is not None:
                slicer.mrmlScene.RemoveNode(node)
        self._nodeIds = []

    def showCase(self, images):
        """PET on CT, the lesion as an outlined segment "Lesion", all views centred on it. Names are neutral (no file
        or source names). Returns {"pet", "ct", "segmentation", "segment_id"}."""
        self.clearCase()
        pet = mrml.node_from_volume(images.pet, self.PET_NAME)
        self._nodeIds.append(pet.GetID())
        ct = None
        if images.ct is not None:
            ct = mrml.node_from_volume(images.ct, self.CT_NAME)
            self._nodeIds.append(ct.GetID())
        mrml.fuse_pet_on_ct(pet, ct)
        segmentation = mrml.new_segmentation(self.LESION_NAME, pet)
        self._nodeIds.append(segmentation.GetID())
        sid = mrml.add_segment(segmentation, images.lesion, "Lesion", pet, color=(0.1, 0.9, 0.3))
        display = segmentation.GetDisplayNode()
        if display is not None:
            display.SetVisibility2DFill(False)      # outline only: the uptake under it stays visible
        if not images.empty:
            mrml.centre_on_segment(segmentation, sid)
        return {"pet": pet, "ct": ct, "segmentation": segmentation, "segment_id": sid}


class PETARStudyTest(ScriptedLoadableModuleTest):
    """A tiny paired study on a synthetic PET/CT (no downloads), rated end to end through the panel logic."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_read_rate_resume()
        self.setUp()
        self.test_widget_round_trip()

    def _makeStudy(self, folder, cases=3):
        import petar
        from petar.study import Study

        phantom = petar.make_phantom(seed=3, shape=(120, 64, 64), spacing=(5.0, 5.0, 5.0))
        phantom.write(folder)
        manifest = {"cases": [{"case_id": f"c{k:03d}", "pet": "pet.nii.gz", "ct": "ct.nii.gz",
                               "mask": "lesions.nii.gz", "label": int(phantom.truth[k]["label"]), "tracer": "FDG",
                               "texts": {"reference": f"Reference finding {k}: {phantom.truth[k]['name']}.",
                                         "petar": f"Model finding {k}: {phantom.truth[k]['name']}."}}
                              for k in range(cases)]}
        manifest_path = os.path.join(folder, "manifest.json")
        with open(manifest_path, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh)
        db = os.path.join(folder, "study.db")
        Study.create(db, manifest_path, readers=["r1", "r2"], design="paired", mask_numbers=True, seed=0).close()
        return db

    @staticmethod
    def _fill(form, score=4, preference="A"):
        for slot in form.slots:
            for scale in SCALES:
                form.scores[slot][scale] = score
        form.preference = preference
        return form

    def test_read_rate_resume(self):
        import tempfile

        self.delayDisplay("Building a tiny paired study")
        folder = tempfile.mkdtemp(prefix="petar_study_", dir=slicer.app.temporaryPath)
        db = self._makeStudy(folder)
        user_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my own volume")
        now = [0.0]
        reader = PETARStudyLib.ReaderPanelLogic(PETARStudyLib.DatabaseOpener(db, "r1"), clock=lambda: now[0])
        logic = PETARStudyLogic()

        step = reader.start()
        self.assertEqual(step.kind, "case", step.message)
        self.assertEqual((step.item.position, step.item.total), (1, 3))
        self.assertEqual(set(step.item.texts), {"A", "B"})
        self.assertNotIn("c000", reader.progress_text())
        self.assertTrue(step.form.is_blank())                       # nothing preselected
        self.assertEqual(reader.progress_text(), "Case 1 of 3 · 0 rated")
        job = PETARStudyLib.case_job(step.item)
        images = job(lambda doc: None, lambda: False, lambda hook: None)
        self.assertEqual(images.error, "")
        nodes = logic.showCase(images)
        names = [n.GetName() for n in (nodes["pet"], nodes["ct"], nodes["segmentation"])]
        self.assertEqual(names, ["Study PET", "Study CT", "Study lesion"])
        for name in names:
            self.assertNotIn("nii", name)
        reader.case_loaded()

        now[0] = 12.5
        self.assertEqual(reader.save_and_next(step.form).kind, "invalid")
        step2 = reader.save_and_next(self._fill(step.form))
        self.assertEqual(step2.item.position, 2, step2.message)
        logic.showCase(PETARStudyLib.read_case(step2.item))
        self.assertIsNone(slicer.mrmlScene.GetNodeByID(nodes["pet"].GetID()))   # the previous case's nodes went
        self.assertIsNotNone(slicer.mrmlScene.GetNodeByID(user_node.GetID()))   # the user's node stayed
        reader.close()

        self.delayDisplay("Reopening resumes at the first unrated case")
        from petar.study import Study

        with Study.open(db) as study:
            saved = study.session("r1").saved(step.item)
        self.assertEqual(saved["preference"], "A")
        self.assertAlmostEqual(saved["seconds"], 12.5, places=3)
        reader = PETARStudyLib.ReaderPanelLogic(PETARStudyLib.DatabaseOpener(db, "r1"), clock=lambda: now[0])
        step = reader.start()
        self.assertEqual(step.item.position, 2)
        back = reader.previous(step.form)
        self.assertEqual(back.item.position, 1)
        self.assertEqual(back.form.scores["A"]["anatomy"], 4)       # prefilled from the saved rating
        step = reader.save_and_next(back.form)                       # unchanged: nothing re-saved
        self.assertEqual((step.kind, step.item.position), ("case", 2))
        reader.case_loaded()
        step = reader.save_and_next(self._fill(step.form, 3, "tie"))
        reader.case_loaded()
        cannot = step.form
        cannot.cannot_assess, cannot.reason = True, "lesion outside the field of view"
        done = reader.save_and_next(cannot)
        self.assertEqual(done.kind, "done", done.message)
        self.assertEqual(reader.progress(), (3, 3))
        with Study.open(db) as study:
            self.assertEqual(study.session("r1").progress(), (3, 3))
        logic.clearCase()
        reader.close()
        self.delayDisplay("PETARStudy logic test passed")

    def _waitForCase(self, widget):
        widget.runner.wait(120)
        widget.runner.poll()
        self.assertIsNone(widget._loading)

    def test_widget_round_trip(self):
        """The panel itself: open as reader r2, nothing preselected, Save & Next, Previous prefilled."""
        import tempfile

        from PETARReport import QSettingsBackend

        self.delayDisplay("Reading through the panel")
        folder = tempfile.mkdtemp(prefix="petar_study_", dir=slicer.app.temporaryPath)
        db = self._makeStudy(folder)
        backend = QSettingsBackend()
        kept = PETARStudyLib.StudySettings.load(backend)
        widget = slicer.util.getModuleWidget("PETARStudy")
        try:
            widget.ui.sourceCombo.currentText = "database file"
            widget.ui.dbPathEdit.currentPath = db
            widget.ui.readerCombo.currentText = "r2"
            widget.onOpen()
            self._waitForCase(widget)
            self.assertEqual(widget.ui.progressLabel.text, "Case 1 of 3 · 0 rated")
            self.assertTrue(widget.ui.textAEdit.plainText and widget.ui.textBEdit.plainText)
            self.assertTrue(widget._formFromGui().is_blank())
            self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName("Study PET"))
            widget.onSaveNext()                                        # incomplete: stays, says what is missing
            self.assertTrue(widget.ui.statusLabel.text.startswith("Missing: Text A"))
            widget._formToGui(self._fill(widget._formFromGui(), 5, "B"))
            widget.onSaveNext()
            self._waitForCase(widget)
            self.assertEqual(widget.ui.progressLabel.text, "Case 2 of 3 · 1 rated")
            self.assertTrue(widget._formFromGui().is_blank())
            widget.onPrevious()
            self._waitForCase(widget)
            form = widget._formFromGui()
            self.assertEqual((form.scores["B"]["utility"], form.preference), (5, "B"))
        finally:
            widget.jobs.reset()
            widget.logic.clearCase()
            if widget.reader is not None:
                widget.reader.close()
            kept.save(backend)
        self.delayDisplay("PETARStudy test passed")
