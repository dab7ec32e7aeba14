"""PETARReport: click or pick a lesion segment on PET/CT and get its findings (template or PETAR-4B engine).

The module is thin: PETARReportLib holds the Slicer-free logic (settings, state machine, runner, jobs, result
parsing; tested with pytest) and PETARReportLib.mrml the MRML <-> numpy adapters. Engines never see MRML.
"""
import importlib
import json
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
    """Source-tree use (module paths added by hand): make the repository's `petar` package importable."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "petar", "__init__.py")) and root not in sys.path:
        sys.path.append(root)


_ensure_import_paths()

import PETARReportLib  # noqa: E402
from PETARReportLib import mrml  # noqa: E402
from PETARReportLib.report_results import findings_text, progress_percent, streamed_text  # noqa: E402

LIB_MODULES = ("geometry", "state", "settings", "runner", "jobs", "report_results", "deps", "widget_jobs", "mrml")


def reload_lib(package, names):
    """Slicer's Reload reloads only the module file: reload the Lib submodules first, then the package."""
    for name in names:
        module = sys.modules.get(f"{package.__name__}.{name}")
        if module is not None:
            importlib.reload(module)
    return importlib.reload(package)


class QSettingsBackend:
    """PETARReportLib.Settings backend over qt.QSettings."""

    def value(self, key, default=None):
        return qt.QSettings().value(key, default)

    def setValue(self, key, value):
        qt.QSettings().setValue(key, value)


class PETARReport(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PETAR Report")
        self.parent.categories = [_("Nuclear Medicine")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerPETAR contributors"]
        self.parent.helpText = _("Findings for PET/CT lesions: click a lesion or pick a segment, then Generate. "
                                 "Numbers are measured from the mask; engines: template (no weights) or PETAR-4B "
                                 "(through the petar service).")
        self.parent.acknowledgementText = _("PETAR-4B is the public laynad/PETAR-4B model.")


@parameterNodeWrapper
class PETARReportParameterNode:
    pet: slicer.vtkMRMLScalarVolumeNode
    ct: slicer.vtkMRMLScalarVolumeNode
    segmentation: slicer.vtkMRMLSegmentationNode
    clickPoints: slicer.vtkMRMLMarkupsFiducialNode


class PETARReportWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.parameters = None
        self.report = None
        self.names = {}
        self._rows = []
        self._lesions = 1

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PETARReport.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PETARReportLogic()
        self.settings = PETARReportLib.Settings.load(QSettingsBackend())
        self.state = PETARReportLib.StateMachine(_("Generate"))
        self.runner = PETARReportLib.EngineRunner()
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.runner.poll)
        self.jobs = PETARReportLib.JobControls(
            self.state, self.runner, self.timer, self.ui.generateButton, self.ui.progressBar, self.ui.statusLabel,
            busy_disabled=[self.ui.inputsCollapsibleButton, self.ui.clickSegmentButton],
            progress_view=self._progressView, show_error=slicer.util.errorDisplay,
            failure_text=_("Report generation failed: "))
        self.parameters = PETARReportLib.ParameterNodeBinding(self.logic.getParameterNode, self.ui,
                                                              self._prepareParameterNode)
        self._settingsToGui()
        self.ui.generateButton.connect("clicked(bool)", self.onGenerate)
        self.ui.clickSegmentButton.connect("clicked(bool)", self.onClickSegment)
        self.ui.exportTextButton.connect("clicked(bool)", lambda: self.onExport("txt"))
        self.ui.exportJsonButton.connect("clicked(bool)", lambda: self.onExport("json"))
        self.ui.findingsTable.connect("cellClicked(int,int)", self.onRowSelected)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateSegmentList)
        self.ui.clickPointSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.clickPlaceWidget.setCurrentNode)
        self.ui.petSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onVolumesChanged)
        self.ui.ctSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onVolumesChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.parameters.connect()
        self.jobs.on_state_changed()

    def cleanup(self):
        self.jobs.reset()
        self.parameters.disconnect()
        self.logic.connector.close()
        self.removeObservers()

    def enter(self):
        self.parameters.connect()

    def onReload(self):
        reload_lib(PETARReportLib, LIB_MODULES)
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event):
        """Before the scene closes: abandon a running job (its result belongs to this scene), drop the findings
        and let go of the parameter node."""
        self.jobs.reset()
        self.parameters.disconnect()
        self._clearResults()

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.parameters.connect()

    @staticmethod
    def _prepareParameterNode(node):
        if not node.pet:
            node.pet = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def _clearResults(self):
        self.report, self.names = None, {}
        self.ui.findingsEdit.plainText = ""
        self._fillTable([])

    # ---- settings --------------------------------------------------------------------------------------------
    def _settingsToGui(self):
        s = self.settings
        self.ui.engineCombo.currentText = s.report_engine
        self.ui.serviceModeCombo.currentText = s.service_mode
        self.ui.pythonPathEdit.currentPath = s.python_executable
        self.ui.urlEdit.text = s.service_url
        self.ui.tokenEdit.text = s.service_token
        self.ui.modelEdit.text = s.model
        self.ui.revisionEdit.text = s.revision
        self.ui.deviceCombo.currentText = s.device
        self.ui.dtypeCombo.currentText = s.dtype
        self.ui.maxTokensSpinBox.value = s.max_new_tokens

    def _settingsFromGui(self):
        s = self.settings
        s.report_engine = self.ui.engineCombo.currentText
        s.service_mode = self.ui.serviceModeCombo.currentText
        s.python_executable = self.ui.pythonPathEdit.currentPath
        s.service_url = self.ui.urlEdit.text.strip()
        s.service_token = self.ui.tokenEdit.text.strip()
        s.model, s.revision = self.ui.modelEdit.text.strip(), self.ui.revisionEdit.text.strip()
        s.device, s.dtype = self.ui.deviceCombo.currentText, self.ui.dtypeCombo.currentText
        s.max_new_tokens = int(self.ui.maxTokensSpinBox.value)
        s.save(QSettingsBackend())
        return s.validate()

    # ---- inputs ----------------------------------------------------------------------------------------------
    def _onVolumesChanged(self, node=None):
        pet, ct = self.ui.petSelector.currentNode(), self.ui.ctSelector.currentNode()
        if pet is not None:
            mrml.fuse_pet_on_ct(pet, ct)

    def _updateSegmentList(self, node=None):
        self.ui.segmentCombo.clear()
        self.ui.segmentCombo.addItem(_("all segments"), "")
        segmentation = self.ui.segmentationSelector.currentNode()
        if segmentation is not None:
            for sid, name in mrml.segment_names(segmentation).items():
                self.ui.segmentCombo.addItem(name, sid)

    # ---- actions ---------------------------------------------------------------------------------------------
    def onClickSegment(self):
        """Click lesion: the PET voxels and the last placed point are captured now; the click segmentation runs off
        the main thread (in-process or the service's `segment` call; a local service may first have to start) with
        Generate as its Cancel button; the mask becomes a NEW segment when it arrives."""
        if self.state.busy:
            return
        self._settingsFromGui()
        settings = self.settings.for_segmentation()
        ok, reason = settings.validate()
        pet, segmentation = self.ui.petSelector.currentNode(), self.ui.segmentationSelector.currentNode()
        point = mrml.last_point_ras(self.ui.clickPointSelector.currentNode())
        if not ok or pet is None or point is None:
            slicer.util.errorDisplay(reason or _("Select the PET and place a point on the lesion first."))
            return
        failure = _("Click segmentation failed: ")
        try:
            if not self.logic.ensureDependencies(settings):
                return
            job = self.logic.clickSegmentJob(pet, point, settings)
        except Exception as exc:
            self.jobs.fail(exc, failure)
            return
        self.jobs.start(job, self.logic.connector.needs_start(), failure_text=failure,
                        progress_view=PETARReportLib.segment_progress,
                        on_finished=lambda mask: self._addClickedSegment(mask, pet, segmentation))

    def _addClickedSegment(self, mask, pet_node, segmentation_node):
        """Main thread, when the click job's mask arrives (never after a scene close or a cancel: the runner drops
        it): a NEW segment in the segmentation chosen at the click, or in a new segmentation when none was."""
        scene = slicer.mrmlScene
        if not scene.IsNodePresent(pet_node) or (segmentation_node is not None
                                                 and not scene.IsNodePresent(segmentation_node)):
            slicer.util.errorDisplay(_("The PET or the segmentation was removed while the lesion was segmented."))
            return
        with slicer.util.tryWithErrorDisplay(_("Could not add the segment.")):
            if segmentation_node is None:
                segmentation_node = mrml.new_segmentation("PETAR lesions", pet_node)
                self.ui.segmentationSelector.setCurrentNode(segmentation_node)
            sid = self.logic.addClickedSegment(mask, pet_node, segmentation_node)
            self._updateSegmentList()
            self.ui.segmentCombo.currentIndex = self.ui.segmentCombo.findData(sid)

    def onGenerate(self):
        if not self.jobs.click():
            return
        ok, reason = self._settingsFromGui()
        pet, segmentation = self.ui.petSelector.currentNode(), self.ui.segmentationSelector.currentNode()
        if not ok or pet is None or segmentation is None:
            slicer.util.errorDisplay(reason or _("Select a PET volume and a segmentation."))
            return
        if not self.logic.ensureDependencies(self.settings):
            return
        sid = self.ui.segmentCombo.currentData
        try:
            job, self.names = self.logic.reportJob(pet, self.ui.ctSelector.currentNode(), segmentation,
                                                   [sid] if sid else None, self.settings)
        except Exception as exc:
            self.jobs.fail(exc)
            return
        self._lesions = max(1, len(self.names))
        self.ui.findingsEdit.plainText = ""
        self.jobs.start(job, self.logic.connector.needs_start(), on_finished=self._onFinished,
                        on_progress=self._onProgress)

    def _progressView(self, doc):
        return progress_percent(doc, self.settings.max_new_tokens, self._lesions), doc.get("stage", "")

    def _onProgress(self, doc):
        text = streamed_text(doc, self.names)
        if text:
            self.ui.findingsEdit.plainText = text

    def _onFinished(self, report):
        self.report = report
        self.ui.findingsEdit.plainText = findings_text(report, self.names)
        self._fillTable(PETARReportLib.findings_rows(report, self.names))

    def _fillTable(self, rows):
        table = self.ui.findingsTable
        table.clear()
        table.setColumnCount(len(PETARReportLib.TABLE_COLUMNS))
        table.setHorizontalHeaderLabels(list(PETARReportLib.TABLE_COLUMNS))
        table.setRowCount(len(rows))
        self._rows = rows
        for r, row in enumerate(rows):
            for c, cell in enumerate(row["cells"]):
                table.setItem(r, c, qt.QTableWidgetItem(cell))

    def onRowSelected(self, row, column):
        centre = self._rows[row].get("center_ras") if 0 <= row < len(self._rows) else None
        if centre:
            mrml.centre_views(centre)

    def onExport(self, kind):
        if self.report is None:
            slicer.util.errorDisplay(_("Generate findings first."))
            return
        path = qt.QFileDialog.getSaveFileName(None, _("Export findings"), f"findings.{kind}", f"*.{kind}")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed.")):
            if kind == "txt":
                PETARReportLib.export_text(path, self.ui.findingsEdit.plainText, self.report)
            else:
                PETARReportLib.export_json(path, self.report, self.ui.findingsEdit.plainText, self.names)


class PETARReportLogic(ScriptedLoadableModuleLogic):
    """MRML <-> petar adapters; usable without the widget (self-test, Python console)."""

    def __init__(self, settings=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.settings = settings or PETARReportLib.Settings()
        self.connector = PETARReportLib.ServiceConnector(self.settings)

    def getParameterNode(self):
        return PETARReportParameterNode(super().getParameterNode())

    def useSettings(self, settings):
        self.settings = settings
        self.connector.settings = settings

    def ensureDependencies(self, settings) -> bool:
        from PETARReportLib import deps

        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "Resources", "requirements-service.txt"), encoding="utf-8") as fh:
            service_reqs = deps.read_requirements(fh.read())
        plan = deps.plan_dependencies(settings, service_reqs, ["transformers>=5.0", "safetensors>=0.4"],
                                      lambda req: _installed(deps.requirement_name(req)))
        if plan.nothing_to_do:
            return True
        version = (int(slicer.app.majorVersion), int(slicer.app.minorVersion))
        pip_ensure = None
        if version >= (5, 12):
            import slicer.packaging

            pip_ensure = slicer.packaging.pip_ensure
        return deps.ensure_local_petar(plan, version, lambda text, details: slicer.util.confirmOkCancelDisplay(
            text, detailedText=details), pip_ensure=pip_ensure, pip_install=slicer.util.pip_install)

    def reportJob(self, pet_node, ct_node, segmentation_node, segment_id_list, settings):
        """(runner job, {label: segment name}); segment_id_list None means every segment."""
        self.useSettings(settings)
        ids = segment_id_list or mrml.segment_ids(segmentation_node)
        pet = mrml.volume_from_node(pet_node)
        ct = mrml.volume_from_node(ct_node) if ct_node is not None else None
        mask, names = mrml.label_mask(segmentation_node, ids, pet_node)
        job = PETARReportLib.report_job(self.connector, pet, ct, mask, None, settings.report_engine,
                                        settings.report_options())
        return job, names

    def generate(self, pet_node, ct_node, segmentation_node, segment_id_list=None, settings=None):
        """Blocking form for scripts and tests: the report JSON."""
        job, names = self.reportJob(pet_node, ct_node, segmentation_node, segment_id_list,
                                    settings or self.settings)
        return job(lambda doc: None, lambda: False, lambda hook: None), names

    def clickSegmentJob(self, pet_node, point_ras, settings=None):
        """Runner job for a click at a RAS point -> mask Volume on the PET grid. Main thread: the PET voxels are
        copied and the point checked here; the job (worker thread) runs the click segmentation in-process or the
        service's `segment` call."""
        if settings is not None:
            self.useSettings(settings)
        return PETARReportLib.segment_job(self.connector, mrml.volume_from_node(pet_node), point_ras)

    def addClickedSegment(self, mask, pet_node, segmentation_node, name="clicked lesion"):
        """Main thread: a click's mask as a NEW segment (existing segments untouched), views centred; its id."""
        sid = mrml.add_segment(segmentation_node, mask, name, pet_node)
        mrml.centre_on_segment(segmentation_node, sid)
        return sid

    def clickSegment(self, pet_node, point_ras, segmentation_node, name="clicked lesion", settings=None):
        """Blocking form for scripts: click segmentation at a RAS point -> id of a NEW segment."""
        job = self.clickSegmentJob(pet_node, point_ras, settings)
        mask = job(lambda doc: None, lambda: False, lambda hook: None)
        return self.addClickedSegment(mask, pet_node, segmentation_node, name)


def _installed(name) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


class PETARReportTest(ScriptedLoadableModuleTest):
    """Synthetic PET/CT in the scene (no downloads, no weights), template engine in-process."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_click_and_template_report, self.test_click_lesion_runs_off_the_main_thread,
                     self.test_scene_close_abandons_the_running_job):
            self.setUp()
            test()

    def _phantom(self):
        import petar

        self.delayDisplay("Building a synthetic PET/CT")
        phantom = petar.make_phantom(seed=1, shape=(120, 80, 80), spacing=(4.0, 4.0, 4.0))
        pet_node = mrml.node_from_volume(phantom.pet, "PET")
        ct_node = mrml.node_from_volume(phantom.ct, "CT")
        mrml.fuse_pet_on_ct(pet_node, ct_node)
        return phantom, pet_node, ct_node

    def test_click_and_template_report(self):
        """The click job through a runner (worker thread; waited for with the runner's poll), its mask added as a
        NEW segment on the main thread, then a template report of that segment."""
        phantom, pet_node, ct_node = self._phantom()
        truth = phantom.truth[0]
        logic = PETARReportLogic()
        segmentation = mrml.new_segmentation("lesions", pet_node)
        user_id = segmentation.GetSegmentation().AddEmptySegment("", "user segment", [0.0, 1.0, 0.0])
        runner, masks, errors = PETARReportLib.EngineRunner(), [], []
        runner.finished.connect(masks.append)
        runner.failed.connect(errors.append)
        runner.start(logic.clickSegmentJob(pet_node, truth["center_ras"]))
        runner.wait(60)
        runner.poll()
        self.assertEqual((len(masks), errors), (1, []))
        sid = logic.addClickedSegment(masks[0], pet_node, segmentation)
        self.assertNotEqual(sid, user_id)
        self.assertEqual(len(mrml.segment_ids(segmentation)), 2)
        self.assertGreater(int(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, sid, pet_node).sum()), 0)
        self.assertEqual(int(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, user_id, pet_node).sum()), 0)
        report, names = logic.generate(pet_node, ct_node, segmentation, [sid])
        self.assertEqual(report["engine"], "template")
        self.assertEqual(len(report["findings"]), 1)
        self.assertGreater(report["findings"][0]["measurement"]["suv_max"], 1.0)
        rows = PETARReportLib.findings_rows(report, names)
        self.assertEqual(rows[0]["cells"][0], "clicked lesion")
        path = os.path.join(slicer.app.temporaryPath, "petar_findings.json")
        PETARReportLib.export_json(path, report)
        with open(path, encoding="utf-8") as fh:
            self.assertEqual(json.load(fh)["engine"], "template")
        self.delayDisplay("PETARReport test passed")

    def test_click_lesion_runs_off_the_main_thread(self):
        """Click lesion in the widget (in-process engine): busy (Generate is Cancel, Click disabled) until the job's
        mask arrives through the runner's poll, then a NEW segment; a click on cold tissue shows petar's message
        and adds nothing."""
        phantom, pet_node, ct_node = self._phantom()
        widget = slicer.util.getModuleWidget("PETARReport")
        segmentation = mrml.new_segmentation("lesions", pet_node)
        user_id = segmentation.GetSegmentation().AddEmptySegment("", "user segment", [0.0, 1.0, 0.0])
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "click")
        points.AddControlPoint(*[float(v) for v in phantom.truth[0]["center_ras"]])
        errors, show_error, mode = [], widget.jobs.show_error, widget.ui.serviceModeCombo.currentText
        widget.jobs.show_error = errors.append
        widget.ui.serviceModeCombo.currentText = "inprocess"
        try:
            widget.ui.petSelector.setCurrentNode(pet_node)
            widget.ui.segmentationSelector.setCurrentNode(segmentation)
            widget.ui.clickPointSelector.setCurrentNode(points)
            widget.onClickSegment()
            self.assertTrue(widget.state.busy)
            self.assertFalse(widget.ui.clickSegmentButton.enabled)
            self.assertEqual(widget.ui.generateButton.text, "Cancel")
            widget.runner.wait(60)
            widget.runner.poll()
            self.assertFalse(widget.state.busy)
            self.assertTrue(widget.ui.clickSegmentButton.enabled)
            self.assertEqual(errors, [])
            ids = mrml.segment_ids(segmentation)
            self.assertEqual(len(ids), 2)
            sid = [i for i in ids if i != user_id][0]
            self.assertEqual(widget.ui.segmentCombo.currentData, sid)
            self.assertEqual(int(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, user_id, pet_node).sum()),
                             0)
            points.AddControlPoint(*[float(v) for v in phantom.pet.index_to_world([40, 40, 60], space="ras")])
            widget.onClickSegment()
            widget.runner.wait(60)
            widget.runner.poll()
            self.assertEqual(len(errors), 1)
            self.assertIn("nothing hot", errors[0])
            self.assertEqual(len(mrml.segment_ids(segmentation)), 2)
        finally:
            widget.jobs.show_error = show_error
            widget.ui.serviceModeCombo.currentText = mode
            widget._settingsFromGui()
        self.delayDisplay("PETARReport click test passed")

    def test_scene_close_abandons_the_running_job(self):
        """Closing the scene while a job runs: the job is told to stop, its result never arrives, the module is
        idle with no findings and gets a new parameter node."""
        import threading
        import time

        widget = slicer.util.getModuleWidget("PETARReport")
        widget.report = {"engine": "template", "findings": []}
        widget._fillTable([{"label": 1, "center_ras": [0.0, 0.0, 0.0], "cells": ("a",) * len(
            PETARReportLib.TABLE_COLUMNS)}])
        hook_called, late = threading.Event(), []

        def job(progress, should_stop, set_cancel_hook):
            set_cancel_hook(hook_called.set)
            while not should_stop():
                time.sleep(0.01)
            return {"engine": "template", "findings": []}

        widget.jobs.start(job, on_finished=late.append)
        self.assertTrue(widget.state.busy)
        slicer.mrmlScene.Clear()
        self.assertFalse(widget.state.busy or widget.runner.running)
        self.assertTrue(hook_called.wait(10))
        self.assertIsNone(widget.report)
        self.assertEqual(widget._rows, [])
        widget.runner.wait(10)
        widget.runner.poll()
        self.assertEqual(late, [])
        widget.enter()
        self.assertIsNotNone(widget.parameters.node)
        self.delayDisplay("PETARReport scene-close test passed")
