"""PETARGrounding: type a finding sentence and see the lesion it describes (rule engine or ConTEXTual Net 3D).

Shared Slicer-free pieces (settings, state machine, runner, jobs, geometry, MRML adapters) come from PETARReportLib
(the PETARReport module, a declared dependency); grounding-specific logic lives in PETARGroundingLib.
"""
import os
import sys

import qt
import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin


def _ensure_import_paths():
    """Source-tree use: the sibling PETARReport folder (PETARReportLib) and the repository root (petar)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in (os.path.join(root, "PETARReport"), root):
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)


_ensure_import_paths()

import PETARGroundingLib  # noqa: E402
import PETARReportLib  # noqa: E402
from PETARReportLib import mrml  # noqa: E402

LIB_MODULES = ("grounding",)


class PETARGrounding(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PETAR Grounding")
        self.parent.categories = [_("Nuclear Medicine")]
        self.parent.dependencies = ["PETARReport"]
        self.parent.contributors = ["SlicerPETAR contributors"]
        self.parent.helpText = _("Type a finding (e.g. 'left axillary node, SUVmax 7.1, image 104') and Localize: "
                                 "the lesion becomes a new segment named from the parsed site.")
        self.parent.acknowledgementText = _("Rule engine: the PETARSeg weak-label algorithm.")


@parameterNodeWrapper
class PETARGroundingParameterNode:
    pet: slicer.vtkMRMLScalarVolumeNode
    ct: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode


class PETARGroundingWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.parameters = None
        self.result = None
        self.candidates = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PETARGrounding.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PETARGroundingLogic()
        from PETARReport import QSettingsBackend

        self.backend = QSettingsBackend()
        self.settings = PETARReportLib.Settings.load(self.backend)
        self.ui.engineCombo.currentText = self.settings.grounding_engine
        self.ui.checkpointPathEdit.currentPath = self.settings.checkpoint
        self.state = PETARReportLib.StateMachine(_("Localize"))
        self.runner = PETARReportLib.EngineRunner()
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.runner.poll)
        self.jobs = PETARReportLib.JobControls(
            self.state, self.runner, self.timer, self.ui.localizeButton, self.ui.progressBar, self.ui.statusLabel,
            busy_disabled=[self.ui.inputsCollapsibleButton, self.ui.findingEdit],
            progress_view=PETARGroundingLib.ground_progress, show_error=slicer.util.errorDisplay,
            failure_text=_("Localization failed: "))
        self.state.listeners.append(self._updateAcceptButton)
        self.parameters = PETARReportLib.ParameterNodeBinding(self.logic.getParameterNode, self.ui)
        self.ui.localizeButton.connect("clicked(bool)", self.onLocalize)
        self.ui.candidatesList.connect("currentRowChanged(int)", self.onCandidateSelected)
        self.ui.acceptCandidateButton.connect("clicked(bool)", self.onAcceptCandidate)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.parameters.connect()
        self.jobs.on_state_changed()
        self._updateAcceptButton()

    def cleanup(self):
        self.jobs.reset()
        self.parameters.disconnect()
        self.logic.connector.close()
        self.removeObservers()

    def enter(self):
        self.parameters.connect()

    def onReload(self):
        from PETARReport import reload_lib

        reload_lib(PETARGroundingLib, LIB_MODULES)
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event):
        """Before the scene closes: abandon a running job (its result belongs to this scene), clear the result and
        the candidates, and let go of the parameter node."""
        self.jobs.reset()
        self.parameters.disconnect()
        self._clearResults()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.parameters.connect()

    def _clearResults(self):
        self.result = self.candidates = None
        self.ui.resultText.plainText = ""
        self.ui.candidatesList.clear()
        self._updateAcceptButton()

    def _updateAcceptButton(self, state=None):
        self.ui.acceptCandidateButton.enabled = (not self.state.busy and self.candidates is not None
                                                 and len(self.candidates) > 0)

    def _readSettings(self):
        """The service settings as last saved (PETAR Report's Engine and service panel) plus this module's engine."""
        settings = PETARReportLib.Settings.load(self.backend)
        settings.grounding_engine = self.ui.engineCombo.currentText
        settings.checkpoint = self.ui.checkpointPathEdit.currentPath
        settings.save(self.backend)
        return settings

    def onLocalize(self):
        if not self.jobs.click():
            return
        self.settings = self._readSettings()
        text = self.ui.findingEdit.plainText
        ok, reason = PETARGroundingLib.validate_text(text)
        if ok:
            ok, reason = self.settings.validate()
        pet = self.ui.petSelector.currentNode()
        if not ok or pet is None:
            slicer.util.errorDisplay(reason or _("Select the PET volume."))
            return
        try:
            job = self.logic.groundJob(text, pet, self.ui.ctSelector.currentNode(), self.settings)
        except Exception as exc:
            self.jobs.fail(exc)
            return
        self._clearResults()
        self.jobs.start(job, self.logic.connector.needs_start(), on_finished=self._onGrounded)

    def _onGrounded(self, outcome):
        result, mask = outcome
        self.result = result
        self.ui.resultText.plainText = PETARGroundingLib.result_summary(result)
        if mask is not None:
            with slicer.util.tryWithErrorDisplay(_("Could not add the segment.")):
                self.logic.applyMask(result, mask, self.ui.petSelector.currentNode(), self._segmentation())
        self.candidates = PETARGroundingLib.CandidateList(result)
        for label in self.candidates.labels():
            self.ui.candidatesList.addItem(label)
        self._updateAcceptButton()

    def _segmentation(self):
        node = self.ui.segmentationSelector.currentNode()
        if node is None:
            node = mrml.new_segmentation("PETAR grounding", self.ui.petSelector.currentNode())
            self.ui.segmentationSelector.setCurrentNode(node)
        return node

    def onCandidateSelected(self, row):
        if self.candidates is not None and 0 <= row < len(self.candidates):
            mrml.centre_views(self.candidates.select(row)["hottest_ras"])

    def onAcceptCandidate(self):
        candidate = self.candidates.accept() if self.candidates is not None else None
        pet_node = self.ui.petSelector.currentNode()
        if candidate is None or self.state.busy:
            return
        if pet_node is None:
            slicer.util.errorDisplay(_("Select the PET volume."))
            return
        result, failure = self.result, _("Could not segment the candidate: ")
        if not PETARGroundingLib.accept_in_service(self.settings):
            with slicer.util.tryWithErrorDisplay(_("Could not segment the candidate."), waitCursor=True):
                self.logic.acceptCandidate(result, candidate, pet_node, self._segmentation())
            return
        segmentation = self._segmentation()
        try:
            job = self.logic.candidateJob(pet_node, candidate, self.settings)
        except Exception as exc:
            self.jobs.fail(exc, failure)
            return
        self.jobs.start(job, self.logic.connector.needs_start(), failure_text=failure,
                        on_finished=lambda mask: self._addCandidateSegment(result, mask, pet_node, segmentation))

    def _addCandidateSegment(self, result, mask, pet_node, segmentation_node):
        if not (slicer.mrmlScene.IsNodePresent(pet_node) and slicer.mrmlScene.IsNodePresent(segmentation_node)):
            slicer.util.errorDisplay(_("The PET or the segmentation was removed while the candidate was segmented."))
            return
        with slicer.util.tryWithErrorDisplay(_("Could not add the segment.")):
            self.logic.applyMask(result, mask, pet_node, segmentation_node)


class PETARGroundingLogic(ScriptedLoadableModuleLogic):
    def __init__(self, settings=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.settings = settings or PETARReportLib.Settings()
        self.connector = PETARReportLib.ServiceConnector(self.settings)

    def getParameterNode(self):
        return PETARGroundingParameterNode(super().getParameterNode())

    def useSettings(self, settings):
        self.settings = settings
        self.connector.settings = settings

    def groundJob(self, text, pet_node, ct_node, settings):
        self.useSettings(settings)
        pet = mrml.volume_from_node(pet_node)
        ct = mrml.volume_from_node(ct_node) if ct_node is not None else None
        return PETARReportLib.ground_job(self.connector, text, pet, ct, settings.grounding_engine,
                                         settings.grounding_options())

    def ground(self, text, pet_node, ct_node=None, settings=None):
        """Blocking form for scripts and tests: (grounding JSON, mask Volume or None)."""
        job = self.groundJob(text, pet_node, ct_node, settings or self.settings)
        return job(lambda doc: None, lambda: False, lambda hook: None)

    def candidateJob(self, pet_node, candidate, settings):
        """Runner job segmenting an accepted candidate at its hottest voxel: the service's `segment` call in service
        mode, the click segmentation in-process otherwise -> mask Volume on the PET grid."""
        self.useSettings(settings)
        return PETARGroundingLib.candidate_job(self.connector, mrml.volume_from_node(pet_node), candidate)

    def acceptCandidate(self, result, candidate, pet_node, segmentation_node):
        """In-process: segment an accepted candidate now and add it as a NEW segment; returns its id."""
        mask = PETARGroundingLib.candidate_mask(mrml.volume_from_node(pet_node), candidate)
        return self.applyMask(result, mask, pet_node, segmentation_node)

    def applyMask(self, result, mask, pet_node, segmentation_node):
        """A NEW segment named from the parsed site, shown in 2D and 3D, views centred on it; returns its id."""
        name = PETARGroundingLib.segment_name(result, mrml.segment_names(segmentation_node).values())
        sid = mrml.add_segment(segmentation_node, mask, name, pet_node, color=(0.1, 0.8, 1.0))
        mrml.show_in_3d(segmentation_node)
        mrml.centre_on_segment(segmentation_node, sid)
        return sid


class PETARGroundingTest(ScriptedLoadableModuleTest):
    """Synthetic PET/CT in the scene (no downloads, no weights), rule engine and click segmentation in-process."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_rule_grounding_adds_named_segment, self.test_ambiguous_candidate_accepted,
                     self.test_scene_close_resets_the_widget):
            self.setUp()
            test()

    def _phantom(self):
        import petar

        self.delayDisplay("Building a synthetic PET/CT")
        phantom = petar.make_phantom(seed=1, shape=(120, 80, 80), spacing=(4.0, 4.0, 4.0))
        return phantom, mrml.node_from_volume(phantom.pet, "PET"), mrml.node_from_volume(phantom.ct, "CT")

    def test_rule_grounding_adds_named_segment(self):
        phantom, pet_node, ct_node = self._phantom()
        truth = phantom.truth[0]
        text = f"FDG-avid {truth['name']}, SUVmax {truth['suv_max']:.1f}, image {truth['axial_slice']}"
        logic = PETARGroundingLogic()
        result, mask = logic.ground(text, pet_node, ct_node)
        self.assertEqual(result["status"], "found", result.get("message"))
        segmentation = mrml.new_segmentation("grounding", pet_node)
        segmentation.GetSegmentation().AddEmptySegment("", "user segment", [0.0, 1.0, 0.0])
        sid = logic.applyMask(result, mask, pet_node, segmentation)
        self.assertEqual(len(mrml.segment_ids(segmentation)), 2)
        self.assertIn("axillary", segmentation.GetSegmentation().GetSegment(sid).GetName())
        self.delayDisplay("PETARGrounding rule test passed")

    def test_ambiguous_candidate_accepted(self):
        """Accepting a candidate in-process (at once) and through the runner (the service-mode path, here with
        the in-process engine) gives the same new segment; the user's segment is untouched."""
        phantom, pet_node, ct_node = self._phantom()
        logic = PETARGroundingLogic()
        result, mask = logic.ground("FDG-avid node", pet_node, ct_node)
        self.assertIsNone(mask)
        candidates = PETARGroundingLib.CandidateList(result)
        self.assertGreater(len(candidates), 1, result.get("message"))
        candidate = candidates.select(1)
        self.assertFalse(PETARGroundingLib.accept_in_service(logic.settings))
        segmentation = mrml.new_segmentation("grounding", pet_node)
        user_id = segmentation.GetSegmentation().AddEmptySegment("", "user segment", [0.0, 1.0, 0.0])
        sid = logic.acceptCandidate(result, candidate, pet_node, segmentation)
        runner, masks, errors = PETARReportLib.EngineRunner(), [], []
        runner.finished.connect(masks.append)
        runner.failed.connect(errors.append)
        runner.start(logic.candidateJob(pet_node, candidate, logic.settings))
        runner.wait(60)
        runner.poll()
        self.assertEqual((len(masks), errors), (1, []))
        sid2 = logic.applyMask(result, masks[0], pet_node, segmentation)
        self.assertEqual(len(mrml.segment_ids(segmentation)), 3)
        first = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, sid, pet_node)
        second = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, sid2, pet_node)
        self.assertGreater(int(first.sum()), 0)
        self.assertTrue((first == second).all())
        self.assertEqual(int(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, user_id, pet_node).sum()), 0)
        self.delayDisplay("PETARGrounding candidate test passed")

    def test_scene_close_resets_the_widget(self):
        """Closing the scene abandons a running job (its result never arrives), clears the result and the
        candidates and gives the module a new parameter node; a job's fraction shows as a percentage."""
        import threading
        import time

        phantom, pet_node, ct_node = self._phantom()
        widget = slicer.util.getModuleWidget("PETARGrounding")
        result, _mask = PETARGroundingLogic().ground("FDG-avid node", pet_node, ct_node)   # in-process settings
        widget._onGrounded((result, None))
        self.assertGreater(len(widget.candidates), 0)
        reported, hook_called, late = threading.Event(), threading.Event(), []

        def job(progress, should_stop, set_cancel_hook):
            set_cancel_hook(hook_called.set)
            progress({"stage": "grounding", "fraction": 0.5})
            reported.set()
            while not should_stop():
                time.sleep(0.01)
            return "late"

        widget.jobs.start(job, on_finished=late.append)
        self.assertTrue(reported.wait(10))
        widget.runner.poll()
        self.assertEqual((widget.ui.progressBar.maximum, widget.ui.progressBar.value), (100, 50))
        self.assertTrue(widget.state.busy)
        slicer.mrmlScene.Clear()
        self.assertFalse(widget.state.busy or widget.runner.running)
        self.assertTrue(hook_called.wait(10))
        self.assertIsNone(widget.candidates)
        self.assertIsNone(widget.result)
        self.assertEqual(widget.ui.resultText.plainText, "")
        self.assertFalse(widget.ui.acceptCandidateButton.enabled)
        widget.runner.wait(10)
        widget.runner.poll()
        self.assertEqual(late, [])
        widget.enter()
        self.assertIsNotNone(widget.parameters.node)
        self.delayDisplay("PETARGrounding scene-close test passed")
