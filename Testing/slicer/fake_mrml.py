"""Strict fakes of vtk and the MRML nodes and scene the modules use (see fake_slicer.py)."""
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


from fake_qt import *  # noqa: F401,F403
from fake_qt import _call_slot  # noqa: F401


# ---- vtk ---------------------------------------------------------------------------------------------------------
class vtkMatrix4x4(Strict):
    def __init__(self):
        self._m = np.eye(4)

    def GetElement(self, i, j):
        return float(self._m[i, j])

    def SetElement(self, i, j, v):
        self._m[i, j] = float(v)

    def DeepCopy(self, other):
        self._m = np.array(other._m, copy=True)


# ---- MRML --------------------------------------------------------------------------------------------------------
class vtkMRMLNode(Strict):
    CLASS = "vtkMRMLNode"

    def __init__(self):
        self._id, self._nm, self._scene, self._display = None, "", None, None

    def GetID(self):
        return self._id

    def GetName(self):
        return self._nm

    def SetName(self, name):
        self._nm = str(name)

    def GetClassName(self):
        return self.CLASS

    def GetScene(self):
        return self._scene

    def IsA(self, cls):
        return any(getattr(c, "CLASS", None) == cls for c in type(self).__mro__)


class vtkMRMLDisplayableNode(vtkMRMLNode):
    CLASS = "vtkMRMLDisplayableNode"

    def GetDisplayNode(self):
        return self._display


class vtkMRMLScalarVolumeDisplayNode(vtkMRMLNode):
    CLASS = "vtkMRMLScalarVolumeDisplayNode"

    def SetAndObserveColorNodeID(self, node_id):
        self._color = node_id

    def SetAutoWindowLevel(self, on):
        self._auto = bool(on)

    def SetWindowLevelMinMax(self, lo, hi):
        self._minmax = (float(lo), float(hi))


class vtkMRMLScalarVolumeNode(vtkMRMLDisplayableNode):
    CLASS = "vtkMRMLScalarVolumeNode"

    def __init__(self):
        super().__init__()
        self._array, self._ijk_to_ras = None, np.eye(4)

    def GetIJKToRASMatrix(self, matrix):
        matrix._m = np.array(self._ijk_to_ras, copy=True)

    def SetIJKToRASMatrix(self, matrix):
        self._ijk_to_ras = np.array(matrix._m, copy=True)

    def CreateDefaultDisplayNodes(self):
        if self._display is None:
            self._display = vtkMRMLScalarVolumeDisplayNode()


class vtkMRMLSegmentationDisplayNode(vtkMRMLNode):
    CLASS = "vtkMRMLSegmentationDisplayNode"

    def SetVisibility2DFill(self, on):
        self._fill = bool(on)

    def SetVisibility(self, on):
        self._visible = bool(on)


class vtkSegment(Strict):
    def __init__(self, name, color):
        self._nm, self._color, self._labelmap = name, tuple(color), None

    def GetName(self):
        return self._nm

    def SetName(self, name):
        self._nm = name

    def GetColor(self):
        return self._color


class vtkSegmentation(Strict):
    def __init__(self):
        self._segments, self._n = {}, 0

    def AddEmptySegment(self, segment_id="", name="", color=None):
        self._n += 1
        sid = segment_id or f"Segment_{self._n}"
        assert sid not in self._segments, f"segment id {sid} exists"
        self._segments[sid] = vtkSegment(name or sid, color if color is not None else (0.5, 0.5, 0.5))
        return sid

    def GetNumberOfSegments(self):
        return len(self._segments)

    def GetNthSegmentID(self, n):
        return list(self._segments)[n]

    def GetSegment(self, sid):
        return self._segments.get(sid)

    def RemoveSegment(self, sid):
        self._segments.pop(sid)


class vtkMRMLSegmentationNode(vtkMRMLDisplayableNode):
    CLASS = "vtkMRMLSegmentationNode"

    def __init__(self):
        super().__init__()
        self._segmentation, self._ref, self._closed = vtkSegmentation(), None, False

    def GetSegmentation(self):
        return self._segmentation

    def CreateDefaultDisplayNodes(self):
        if self._display is None:
            self._display = vtkMRMLSegmentationDisplayNode()

    def SetReferenceImageGeometryParameterFromVolumeNode(self, volume):
        self._ref = (volume._array.shape, np.array(volume._ijk_to_ras))

    def CreateClosedSurfaceRepresentation(self):
        self._closed = True
        return True

    def GetSegmentCenterRAS(self, sid):
        labelmap = self._segmentation.GetSegment(sid)._labelmap
        if labelmap is None or not labelmap[0].any():
            return None
        array, m = labelmap
        k, j, i = np.nonzero(array)
        ijk = np.array([(i.min() + i.max()) / 2, (j.min() + j.max()) / 2, (k.min() + k.max()) / 2, 1.0])
        return tuple(float(v) for v in (m @ ijk)[:3])


class vtkMRMLMarkupsFiducialNode(vtkMRMLDisplayableNode):
    CLASS = "vtkMRMLMarkupsFiducialNode"

    def __init__(self):
        super().__init__()
        self._points = []

    def AddControlPoint(self, *xyz):
        point = xyz[0] if len(xyz) == 1 else xyz
        self._points.append([float(v) for v in point])
        return len(self._points) - 1

    def GetNumberOfControlPoints(self):
        return len(self._points)

    def GetNthControlPointPositionWorld(self, n, out):
        out[:] = self._points[n]


class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    CLASS = "vtkMRMLScriptedModuleNode"

    def __init__(self):
        super().__init__()
        self._params = {}


class vtkMRMLSliceNode(vtkMRMLNode):
    CLASS = "vtkMRMLSliceNode"
    CenteredJumpSlice = 1
    DefaultJumpSlice = 0
    OffsetJumpSlice = 2

    @staticmethod
    def JumpAllSlices(scene, r, a, s, mode=0, *args):
        scene._jumps.append(((float(r), float(a), float(s)), mode))


NODE_CLASSES = {c.CLASS: c for c in (vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLMarkupsFiducialNode,
                                     vtkMRMLScriptedModuleNode)}


class vtkMRMLScene(Strict):
    StartCloseEvent = 66003
    EndCloseEvent = 66004

    def __init__(self):
        self._nodes, self._observers, self._n, self._jumps, self._layers = {}, [], 0, [], {}

    def AddNewNodeByClass(self, class_name, name=""):
        node = NODE_CLASSES[class_name]()
        node._nm = name
        return self.AddNode(node)

    def AddNode(self, node):
        self._n += 1
        node._id, node._scene = f"{node.CLASS}{self._n}", self
        self._nodes[node._id] = node
        return node

    def GetNodeByID(self, node_id):
        return self._nodes.get(node_id)

    def GetFirstNodeByClass(self, class_name):
        return next((n for n in self._nodes.values() if n.IsA(class_name)), None)

    def GetFirstNodeByName(self, name):
        return next((n for n in self._nodes.values() if n.GetName() == name), None)

    def GetNodesByClass(self, class_name):
        return [n for n in self._nodes.values() if n.IsA(class_name)]

    def IsNodePresent(self, node):
        return 1 if node is not None and self._nodes.get(node.GetID()) is node else 0

    def RemoveNode(self, node):
        self._nodes.pop(node.GetID(), None)
        node._scene = None

    def AddObserver(self, event, callback, priority=0.0):
        self._observers.append((event, callback))
        return len(self._observers) - 1

    def RemoveObserver(self, tag):
        self._observers[tag] = (None, None)

    def _invoke(self, event):
        for ev, cb in list(self._observers):
            if ev == event:
                cb(self, event)

    def Clear(self, removeSingletons=0):
        self._invoke(self.StartCloseEvent)
        for node in list(self._nodes.values()):
            self.RemoveNode(node)
        self._invoke(self.EndCloseEvent)
