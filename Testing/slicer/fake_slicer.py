"""Minimal, strict fakes of `slicer`, `qt`, `vtk` and `ctk`, so the module files' Widget/Logic code can EXECUTE
without 3D Slicer (Testing/slicer/test_modules_smoke.py).

Honest by construction, not MagicMock: every fake object raises AttributeError for a name it does not define (read
or write), `slicer.util` fakes bind their arguments to the real signatures in Slicer's API index
(Testing/data/slicer_api/slicer_api.json), widgets are built from the module's .ui (class + objectName, properties,
combo items, <connections>), a disabled button cannot be clicked, an exclusive QButtonGroup refuses to uncheck its
checked button, and a QTimer only fires while started.

Limits (what is NOT faked): no resampling (a segment lives on its reference volume's grid; any other grid raises),
no rendering, no real PythonQt conversions. Use `FakeSlicer` as a context manager: it installs the modules in
`sys.modules` and removes them, the imported module files and `PETARReportLib.mrml` afterwards.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import sys
import types
import xml.etree.ElementTree as ET

import numpy as np

from slicer_api_index import api

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from fake_mrml import *  # noqa: F401,F403
from fake_qt import *  # noqa: F401,F403
from fake_qt import _call_slot, _ui_value  # noqa: F401


# ---- slicer.util, checked against the API index -------------------------------------------------------------------
def _indexed(module, name=None):
    """Bind each call to the real signature from the API index before running the fake."""
    def wrap(fn):
        real = name or fn.__name__
        signature = api()["python"][module]["functions"][real]["signature"]
        ns = {}
        exec(f"def {signature}: pass", {}, ns)   # noqa: S102 - the index's own signature text
        sig = inspect.signature(ns[real])

        @functools.wraps(fn)
        def call(*args, **kwargs):
            sig.bind(*args, **kwargs)           # TypeError on a call that the real function would refuse
            return fn(*args, **kwargs)
        return call
    return wrap


class FakeSlicer:
    """Context manager: fake modules in sys.modules, `.errors` (errorDisplay texts), `.scene`, `.qt`, `.slicer`."""

    FAKED = ("slicer", "slicer.util", "slicer.i18n", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper",
             "slicer.packaging", "qt", "vtk", "ctk")
    IMPORTED = ("PETARReport", "PETARGrounding", "PETARStudy", "PETARReportLib.mrml")

    def __init__(self):
        self.errors = []
        self.settings = {}
        self.save_path = ""
        self.scene = vtkMRMLScene()

    # ---- install / remove ----------------------------------------------------------------------------------------
    def __enter__(self):
        self._saved = {name: sys.modules.get(name) for name in self.FAKED + self.IMPORTED}
        self._path = list(sys.path)
        for name in self.IMPORTED:
            sys.modules.pop(name, None)
        modules = self._build()
        sys.modules.update(modules)
        self.slicer, self.qt, self.vtk = modules["slicer"], modules["qt"], modules["vtk"]
        return self

    def __exit__(self, *exc):
        for name, module in self._saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        lib = sys.modules.get("PETARReportLib")
        if lib is not None and "mrml" in vars(lib) and self._saved["PETARReportLib.mrml"] is None:
            delattr(lib, "mrml")
        sys.path[:] = self._path
        return False

    def import_module(self, name):
        return importlib.import_module(name)

    def widget(self, name):
        """Import module file `name`, construct its module and widget classes and run setup()."""
        module = self.import_module(name)
        parent = FakeModuleParent()
        getattr(module, name)(parent)
        widget = getattr(module, f"{name}Widget")(FakeWidgetParent())
        widget.setup()
        return widget

    # ---- the fake modules --------------------------------------------------------------------------------------
    def _build(self):
        fake = self
        qt = types.ModuleType("qt")
        for cls in (QObject, QWidget, QLabel, QPushButton, QCheckBox, QRadioButton, QButtonGroup, QGroupBox,
                    QPlainTextEdit, QLineEdit, QSpinBox, QProgressBar, QComboBox, QListWidget, QTableWidget,
                    QTableWidgetItem):
            setattr(qt, cls.__name__, cls)

        class QTimer(QObject):
            SIGNALS = ("timeout()",)

            def __init__(self, parent=None):
                super().__init__(parent)
                self._interval, self._active = 0, False

            def setInterval(self, ms):
                self._interval = int(ms)

            def start(self, *ms):
                self._active = True

            def stop(self):
                self._active = False

            def isActive(self):
                return self._active

            def fire(self):
                """Test helper: one timeout, only while the timer runs (as Qt would)."""
                active = self._active
                if active:
                    self.emit("timeout()")
                return active

        class QSettings(Strict):
            def value(self, key, default=None):
                return fake.settings.get(key, default)

            def setValue(self, key, value):
                fake.settings[key] = value if isinstance(value, (str, int, float, bool)) else str(value)

        class QFileDialog(Strict):
            @staticmethod
            def getSaveFileName(parent=None, caption="", directory="", filter=""):
                return fake.save_path

        qt.QTimer, qt.QSettings, qt.QFileDialog = QTimer, QSettings, QFileDialog

        vtk = types.ModuleType("vtk")
        vtk.vtkMatrix4x4 = vtkMatrix4x4
        ctk = types.ModuleType("ctk")
        ctk.ctkCollapsibleButton, ctk.ctkPathLineEdit = ctkCollapsibleButton, ctkPathLineEdit

        slicer = types.ModuleType("slicer")
        slicer.__path__ = []
        slicer.mrmlScene = self.scene
        for cls in list(NODE_CLASSES.values()) + [vtkMRMLSliceNode, vtkMRMLNode]:
            setattr(slicer, cls.CLASS, cls)
        slicer.app = types.SimpleNamespace(majorVersion=5, minorVersion=12, temporaryPath=ROOT)

        util = types.ModuleType("slicer.util")
        U = "slicer.util"

        @_indexed(U)
        def loadUI(path):
            return load_ui(path)

        @_indexed(U)
        def childWidgetVariables(widget):
            return UiVariables(widget._children)

        @_indexed(U)
        def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
            fake.errors.append(str(text))

        @_indexed(U)
        def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs):
            raise AssertionError(f"unexpected confirmation dialog: {text}")

        @_indexed(U)
        def pip_install(requirements, **kwargs):
            raise AssertionError(f"unexpected pip install: {requirements}")

        @_indexed(U)
        @contextlib.contextmanager
        def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
            try:
                yield
            except Exception as exc:
                if show:
                    fake.errors.append(f"{message}\n\n{exc}" if message is not None else str(exc))
                raise                                       # Slicer re-raises after showing the error

        @_indexed(U)
        def arrayFromVolume(volumeNode):
            assert volumeNode._array is not None, "volume node has no image data"
            return volumeNode._array

        @_indexed(U)
        def addVolumeFromArray(narray, ijkToRAS=None, name=None, nodeClassName=None):
            node = fake.scene.AddNewNodeByClass(nodeClassName or "vtkMRMLScalarVolumeNode", name or "")
            node._array = np.array(narray, copy=True)
            if ijkToRAS is not None:
                node._ijk_to_ras = np.array(ijkToRAS._m if isinstance(ijkToRAS, vtkMatrix4x4) else ijkToRAS)
            node.CreateDefaultDisplayNodes()
            return node

        @_indexed(U)
        def arrayFromVTKMatrix(vmatrix):
            return np.array(vmatrix._m, copy=True)

        @_indexed(U)
        def vtkMatrixFromArray(narray):
            m = vtkMatrix4x4()
            m._m = np.array(narray, dtype=float).reshape(4, 4)
            return m

        def _grid(volume):
            return volume._array.shape, volume._ijk_to_ras

        @_indexed(U)
        def arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolumeNode=None):
            segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
            assert segment is not None, f"no segment {segmentId}"
            assert referenceVolumeNode is not None, "fake: give the reference volume"
            shape, m = _grid(referenceVolumeNode)
            if segment._labelmap is None:
                return np.zeros(shape, dtype=np.uint8)
            array, seg_m = segment._labelmap
            if array.shape != shape or not np.allclose(seg_m, m):
                raise NotImplementedError("fake: the segment is on another grid (no resampling)")
            return np.array(array, copy=True)

        @_indexed(U)
        def updateSegmentBinaryLabelmapFromArray(narray, segmentationNode, segmentId, referenceVolumeNode=None):
            segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
            assert segment is not None, f"no segment {segmentId}"
            assert referenceVolumeNode is not None, "fake: give the reference volume"
            shape, m = _grid(referenceVolumeNode)
            assert np.asarray(narray).shape == shape, f"array {np.asarray(narray).shape} != volume {shape}"
            segment._labelmap = (np.array(narray, dtype=np.uint8, copy=True), np.array(m))

        @_indexed(U)
        def setSliceViewerLayers(background="keep-current", foreground="keep-current", label="keep-current",
                                 foregroundOpacity=None, labelOpacity=None, fit=False, rotateToVolumePlane=False):
            fake.scene._layers = {"background": background, "foreground": foreground,
                                  "foregroundOpacity": foregroundOpacity}

        @_indexed(U)
        def getModuleWidget(module):
            raise NotImplementedError("fake: construct widgets with FakeSlicer.widget()")

        class VTKObservationMixin:
            def __init__(self):
                self.Observations = []

            def addObserver(self, obj, event, method, priority=0.0, group="none"):
                self.Observations.append((obj, obj.AddObserver(event, method, priority)))

            def removeObservers(self, method=None):
                for obj, tag in self.Observations:
                    obj.RemoveObserver(tag)
                self.Observations = []

        for fn in (loadUI, childWidgetVariables, errorDisplay, confirmOkCancelDisplay, pip_install,
                   tryWithErrorDisplay, arrayFromVolume, addVolumeFromArray, arrayFromVTKMatrix, vtkMatrixFromArray,
                   arrayFromSegmentBinaryLabelmap, updateSegmentBinaryLabelmapFromArray, setSliceViewerLayers,
                   getModuleWidget):
            setattr(util, fn.__name__, fn)
        util.VTKObservationMixin = VTKObservationMixin

        i18n = types.ModuleType("slicer.i18n")
        i18n.tr = lambda text: text

        slm = types.ModuleType("slicer.ScriptedLoadableModule")

        class ScriptedLoadableModule:
            def __init__(self, parent):
                self.parent = parent
                parent.icon = None

        class ScriptedLoadableModuleWidget:
            def __init__(self, parent=None):
                self.parent = parent if parent is not None else FakeWidgetParent()
                self.layout = self.parent.layout()
                self.moduleName = type(self).__name__[:-len("Widget")]
                self.developerMode = False

            def resourcePath(self, filename):
                here = os.path.dirname(os.path.abspath(sys.modules[type(self).__module__].__file__))
                path = os.path.join(here, "Resources", filename)
                assert os.path.isfile(path), f"no resource {path}"
                return path

            def setup(self):
                pass

            def cleanup(self):
                pass

            def onReload(self):
                raise NotImplementedError("fake: no module reload")

        class ScriptedLoadableModuleLogic:
            def __init__(self, parent=None):
                self.moduleName = type(self).__name__[:-len("Logic")]

            def getParameterNode(self):
                for node in fake.scene.GetNodesByClass("vtkMRMLScriptedModuleNode"):
                    if node.GetName() == self.moduleName:
                        return node
                return fake.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", self.moduleName)

        class ScriptedLoadableModuleTest:
            pass

        slm.ScriptedLoadableModule, slm.ScriptedLoadableModuleWidget = ScriptedLoadableModule, \
            ScriptedLoadableModuleWidget
        slm.ScriptedLoadableModuleLogic, slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleLogic, \
            ScriptedLoadableModuleTest

        pnw = types.ModuleType("slicer.parameterNodeWrapper")
        pnw.parameterNodeWrapper = parameter_node_wrapper

        packaging = types.ModuleType("slicer.packaging")

        def pip_ensure(*args, **kwargs):
            raise AssertionError("unexpected pip_ensure")
        packaging.pip_ensure = pip_ensure

        slicer.util, slicer.i18n, slicer.ScriptedLoadableModule = util, i18n, slm
        slicer.parameterNodeWrapper, slicer.packaging = pnw, packaging
        return {"slicer": slicer, "slicer.util": util, "slicer.i18n": i18n, "slicer.ScriptedLoadableModule": slm,
                "slicer.parameterNodeWrapper": pnw, "slicer.packaging": packaging, "qt": qt, "vtk": vtk, "ctk": ctk}


def parameter_node_wrapper(cls):
    """Typed fields stored on the scripted module node; connectGui binds widgets by their SlicerParameterName."""
    fields = dict(cls.__annotations__)

    class Wrapper:
        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)
            object.__setattr__(self, "_guis", {})

        def __getattr__(self, name):
            if name not in fields:
                raise AttributeError(f"{cls.__name__} has no parameter {name!r}")
            node = self.parameterNode._params.get(name)
            return node if node is not None and node.GetScene() is not None else None

        def __setattr__(self, name, value):
            if name not in fields:
                raise AttributeError(f"{cls.__name__} has no parameter {name!r}")
            if value is not None and not isinstance(value, fields[name]):
                raise TypeError(f"{name} must be {fields[name].__name__}, got {type(value).__name__}")
            self.parameterNode._params[name] = value
            for widget in self._guis.values():
                for w in widget:
                    if w._ui_props.get("SlicerParameterName") == name and w.currentNode() is not value:
                        w.setCurrentNode(value)

        def connectGui(self, ui):
            bound = [w for w in vars(ui).values() if "SlicerParameterName" in getattr(w, "_ui_props", {})]
            for w in bound:
                name = w._ui_props["SlicerParameterName"]
                assert name in fields, f"{w._name}: no parameter {name}"
                value = getattr(self, name)
                if value is not None:
                    w.setCurrentNode(value)
                else:
                    self.parameterNode._params[name] = w.currentNode()
                slot = functools.partial(_gui_to_param, self, name)
                w.connect("currentNodeChanged(vtkMRMLNode*)", slot)
                w._param_slot = slot
            tag = len(self._guis) + 1
            self._guis[tag] = bound
            return tag

        def disconnectGui(self, tag):
            for w in self._guis.pop(tag, []):
                w.disconnect("currentNodeChanged(vtkMRMLNode*)", w._param_slot)

    Wrapper.__name__ = cls.__name__
    return Wrapper


def _gui_to_param(wrapper, name, node):
    wrapper.parameterNode._params[name] = node


class FakeModuleParent(Strict):
    title = ""
    categories = ()
    dependencies = ()
    contributors = ()
    helpText = ""
    acknowledgementText = ""
    icon = None


class FakeWidgetParent(QWidget):
    isEntered = True
