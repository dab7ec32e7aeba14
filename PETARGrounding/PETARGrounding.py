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


class PETARGroundingWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
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
        self.state.listeners.append(self._onStateChanged)
        self.runner = PETARReportLib.EngineRunner()
        self.runner.progress.connect(lambda doc: self.state.service_ready())
        self.runner.finished.connect(self._onFinished)
        self.runner.failed.connect(self._onFailed)
        self.runner.cancelled.connect(self._onCancelled)
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.runner.poll)
        self.ui.localizeButton.connect("clicked(bool)", self.onLocalize)
        self.ui.candidatesList.connect("currentRowChanged(int)", self.onCandidateSelected)
        self.ui.acceptCandidateButton.connect("clicked(bool)", self.onAcceptCandidate)
        self.logic.getParameterNode().connectGui(self.ui)
        self._onStateChanged(self.state.state)

    def cleanup(self):
        self.timer.stop()
        self.runner.cancel()
        self.logic.connector.close()

    def onReload(self):
        from PETARReport import reload_lib

        reload_lib(PETARGroundingLib, LIB_MODULES)
        ScriptedLoadableModuleWidget.onReload(self)

    def onLocalize(self):
        action = self.state.click()
        if action == "cancel":
            self.state.cancel()
            self.runner.cancel()
            return
        if action != "start":
            return
        self.settings.grounding_engine = self.ui.engineCombo.currentText
        self.settings.checkpoint = self.ui.checkpointPathEdit.currentPath
        self.settings.save(self.backend)
        text = self.ui.findingEdit.plainText
        ok, reason = PETARGroundingLib.validate_text(text)
        if ok:
            ok, reason = self.settings.validate()
        pet = self.ui.petSelector.currentNode()
        if not ok or pet is None:
            slicer.util.errorDisplay(reason or _("Select the PET volume."))
            return
        job = self.logic.groundJob(text, pet, self.ui.ctSelector.currentNode(), self.settings)
        self.ui.resultText.plainText = ""
        self.ui.candidatesList.clear()
        self.state.start(self.logic.connector.needs_start())
        self.runner.start(job)
        self.timer.start()

    def _onFinished(self, outcome):
        self.timer.stop()
        self.state.finish()
        result, mask = outcome
        self.result = result
        self.ui.resultText.plainText = PETARGroundingLib.result_summary(result)
        if mask is not None:
            with slicer.util.tryWithErrorDisplay(_("Could not add the segment.")):
                self.logic.applyMask(result, mask, self.ui.petSelector.currentNode(), self._segmentation())
        self.candidates = PETARGroundingLib.CandidateList(result)
        for label in self.candidates.labels():
            self.ui.candidatesList.addItem(label)
        self.ui.acceptCandidateButton.enabled = len(self.candidates) > 0

    def _onFailed(self, exc):
        self.timer.stop()
        self.state.finish()
        slicer.util.errorDisplay(_("Localization failed: ") + str(exc))

    def _onCancelled(self):
        self.timer.stop()
        self.state.finish()
        self.ui.resultText.plainText = _("cancelled")

    def _onStateChanged(self, state):
        self.ui.localizeButton.text = self.state.button_text
        self.ui.localizeButton.enabled = self.state.button_enabled
        self.ui.progressBar.visible = self.state.busy

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
        if candidate is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not segment the candidate."), waitCursor=True):
            pet_node = self.ui.petSelector.currentNode()
            mask = PETARGroundingLib.candidate_mask(mrml.volume_from_node(pet_node), candidate)
            self.logic.applyMask(self.result, mask, pet_node, self._segmentation())


class PETARGroundingLogic(ScriptedLoadableModuleLogic):
    def __init__(self, settings=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.settings = settings or PETARReportLib.Settings()
        self.connector = PETARReportLib.ServiceConnector(self.settings)

    def getParameterNode(self):
        return PETARGroundingParameterNode(super().getParameterNode())

    def groundJob(self, text, pet_node, ct_node, settings):
        self.settings = settings
        self.connector.settings = settings
        pet = mrml.volume_from_node(pet_node)
        ct = mrml.volume_from_node(ct_node) if ct_node is not None else None
        return PETARReportLib.ground_job(self.connector, text, pet, ct, settings.grounding_engine,
                                         settings.grounding_options())

    def ground(self, text, pet_node, ct_node=None, settings=None):
        """Blocking form for scripts and tests: (grounding JSON, mask Volume or None)."""
        job = self.groundJob(text, pet_node, ct_node, settings or self.settings)
        return job(lambda doc: None, lambda: False, lambda hook: None)

    def applyMask(self, result, mask, pet_node, segmentation_node):
        """A NEW segment named from the parsed site, shown in 2D and 3D, views centred on it; returns its id."""
        name = PETARGroundingLib.segment_name(result, mrml.segment_names(segmentation_node).values())
        sid = mrml.add_segment(segmentation_node, mask, name, pet_node, color=(0.1, 0.8, 1.0))
        mrml.show_in_3d(segmentation_node)
        mrml.centre_on_segment(segmentation_node, sid)
        return sid


class PETARGroundingTest(ScriptedLoadableModuleTest):
    """Synthetic PET/CT in the scene (no downloads, no weights), rule engine in-process."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_rule_grounding_adds_named_segment()

    def test_rule_grounding_adds_named_segment(self):
        import petar

        self.delayDisplay("Building a synthetic PET/CT")
        phantom = petar.make_phantom(seed=1, shape=(120, 80, 80), spacing=(4.0, 4.0, 4.0))
        pet_node = mrml.node_from_volume(phantom.pet, "PET")
        ct_node = mrml.node_from_volume(phantom.ct, "CT")
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
        self.delayDisplay("PETARGrounding test passed")
