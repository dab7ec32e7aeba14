"""PETARReport: click or pick a lesion segment on PET/CT and get its findings (template or PETAR-4B engine).

The module is thin: PETARReportLib holds the Slicer-free logic (settings, state machine, runner, jobs, result
parsing; tested with pytest) and PETARReportLib.mrml the MRML <-> numpy adapters. Engines never see MRML.
"""
import importlib
import json
import logging
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

LIB_MODULES = ("geometry", "state", "settings", "runner", "jobs", "report_results", "deps", "mrml")


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
        self._parameterNode = None
        self.report = None
        self.names = {}
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
        self.state.listeners.append(self._onStateChanged)
        self.runner = PETARReportLib.EngineRunner()
        self.runner.progress.connect(self._onProgress)
        self.runner.finished.connect(self._onFinished)
        self.runner.failed.connect(self._onFailed)
        self.runner.cancelled.connect(self._onCancelled)
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.runner.poll)
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
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self._onStateChanged(self.state.state)

    def cleanup(self):
        self.timer.stop()
        self.runner.cancel()
        self.logic.connector.close()
        self.removeObservers()

    def onReload(self):
        reload_lib(PETARReportLib, LIB_MODULES)
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self._parameterNode = self.logic.getParameterNode()
        if not self._parameterNode.pet:
            self._parameterNode.pet = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        self._parameterNode.connectGui(self.ui)

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
        pet, points = self.ui.petSelector.currentNode(), self.ui.clickPointSelector.currentNode()
        point = mrml.last_point_ras(points)
        if pet is None or point is None:
            slicer.util.errorDisplay(_("Select the PET and place a point on the lesion first."))
            return
        with slicer.util.tryWithErrorDisplay(_("Click segmentation failed."), waitCursor=True):
            segmentation = self.ui.segmentationSelector.currentNode()
            if segmentation is None:
                segmentation = mrml.new_segmentation("PETAR lesions", pet)
                self.ui.segmentationSelector.setCurrentNode(segmentation)
            sid = self.logic.clickSegment(pet, point, segmentation)
            self._updateSegmentList()
            self.ui.segmentCombo.currentIndex = self.ui.segmentCombo.findData(sid)

    def onGenerate(self):
        action = self.state.click()
        if action == "cancel":
            self.state.cancel()
            self.runner.cancel()
            return
        if action != "start":
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
            self._onFailed(exc)
            return
        self._lesions = max(1, len(self.names))
        self.ui.findingsEdit.plainText = ""
        self.state.start(self.logic.connector.needs_start())
        self.runner.start(job)
        self.timer.start()

    def _onProgress(self, doc):
        self.state.service_ready()
        self.ui.statusLabel.text = doc.get("stage", "")
        self.ui.progressBar.value = progress_percent(doc, self.settings.max_new_tokens, self._lesions)
        text = streamed_text(doc, self.names)
        if text:
            self.ui.findingsEdit.plainText = text

    def _onFinished(self, report):
        self.timer.stop()
        self.state.finish()
        self.report = report
        self.ui.findingsEdit.plainText = findings_text(report, self.names)
        self._fillTable(PETARReportLib.findings_rows(report, self.names))
        self.ui.progressBar.value = 100
        self.ui.statusLabel.text = _("done")

    def _onFailed(self, exc):
        self.timer.stop()
        self.state.finish()
        self.ui.statusLabel.text = _("failed")
        logging.error("PETAR report failed: %s", exc)
        slicer.util.errorDisplay(_("Report generation failed: ") + str(exc))

    def _onCancelled(self):
        self.timer.stop()
        self.state.finish()
        self.ui.statusLabel.text = _("cancelled")

    def _onStateChanged(self, state):
        self.ui.generateButton.text = self.state.button_text
        self.ui.generateButton.enabled = self.state.button_enabled
        self.ui.inputsCollapsibleButton.enabled = not self.state.busy
        self.ui.progressBar.visible = self.state.busy

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
        centre = self._rows[row].get("center_ras") if 0 <= row < len(getattr(self, "_rows", [])) else None
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

    def clickSegment(self, pet_node, point_ras, segmentation_node, name="clicked lesion"):
        """Click segmentation at a RAS point -> id of a NEW segment (existing segments untouched)."""
        pet = mrml.volume_from_node(pet_node)
        job = PETARReportLib.segment_job(self.connector, pet, point_ras)
        mask = job(lambda doc: None, lambda: False, lambda hook: None)
        sid = mrml.add_segment(segmentation_node, mask, name, pet_node)
        mrml.centre_on_segment(segmentation_node, sid)
        return sid


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
        self.setUp()
        self.test_click_and_template_report()

    def test_click_and_template_report(self):
        import petar

        self.delayDisplay("Building a synthetic PET/CT")
        phantom = petar.make_phantom(seed=1, shape=(120, 80, 80), spacing=(4.0, 4.0, 4.0))
        pet_node = mrml.node_from_volume(phantom.pet, "PET")
        ct_node = mrml.node_from_volume(phantom.ct, "CT")
        mrml.fuse_pet_on_ct(pet_node, ct_node)
        truth = phantom.truth[0]
        logic = PETARReportLogic()
        segmentation = mrml.new_segmentation("lesions", pet_node)
        user_id = segmentation.GetSegmentation().AddEmptySegment("", "user segment", [0.0, 1.0, 0.0])
        sid = logic.clickSegment(pet_node, truth["center_ras"], segmentation)
        self.assertNotEqual(sid, user_id)
        self.assertEqual(len(mrml.segment_ids(segmentation)), 2)
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
