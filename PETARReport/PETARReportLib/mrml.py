"""MRML <-> petar adapters shared by both modules: the only Lib file that imports slicer.

Not imported by the package `__init__` (so the rest of the Lib is testable without Slicer); Testing/slicer checks
every slicer/MRML name used here against Slicer 5.12's API index. Adapters convert, never compute.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk

from .geometry import ijk_to_ras_from_volume, volume_from_ijk_to_ras


def ijk_to_ras(volume_node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def volume_from_node(volume_node):
    """petar.Volume (LPS) for a scalar volume node; the voxels are copied (the worker thread reads them)."""
    array = np.array(slicer.util.arrayFromVolume(volume_node), copy=True)
    return volume_from_ijk_to_ras(array, ijk_to_ras(volume_node))


def node_from_volume(volume, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node holding a petar.Volume (geometry converted to RAS)."""
    node = slicer.util.addVolumeFromArray(np.asarray(volume.array), name=name, nodeClassName=class_name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_from_volume(volume)))
    return node


def segment_ids(segmentation_node) -> list:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def segment_names(segmentation_node) -> dict:
    """{segment id: segment name}."""
    segmentation = segmentation_node.GetSegmentation()
    return {sid: segmentation.GetSegment(sid).GetName() for sid in segment_ids(segmentation_node)}


def label_mask(segmentation_node, segment_id_list, pet_node):
    """A label Volume on the PET grid: segment k of `segment_id_list` -> label k (1-based); returns (mask, names)."""
    pet_geometry = ijk_to_ras(pet_node)
    shape = slicer.util.arrayFromVolume(pet_node).shape
    labels = np.zeros(shape, dtype=np.uint16)
    names = {}
    for k, sid in enumerate(segment_id_list, start=1):
        seg = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, sid, pet_node)
        labels[(seg > 0) & (labels == 0)] = k
        names[k] = segmentation_node.GetSegmentation().GetSegment(sid).GetName()
    return volume_from_ijk_to_ras(labels, pet_geometry), names


def add_segment(segmentation_node, mask_volume, name: str, pet_node, color=(1.0, 0.9, 0.1)) -> str:
    """Always a NEW segment (the user's segments are never modified); returns its id."""
    existing = set(segment_names(segmentation_node).values())
    unique, n = name, 2
    while unique in existing:
        unique = f"{name} ({n})"
        n += 1
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", unique, list(color))
    mask = (np.asarray(mask_volume.array) > 0).astype(np.uint8)
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation_node, segment_id, pet_node)
    return segment_id


def new_segmentation(name: str, pet_node):
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(pet_node)
    return node


def centre_views(ras) -> None:
    """Centre every slice view on a RAS point."""
    r, a, s = (float(v) for v in ras)
    slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)


def centre_on_segment(segmentation_node, segment_id) -> None:
    centre = segmentation_node.GetSegmentCenterRAS(segment_id)
    if centre is not None:
        centre_views(centre)


def show_in_3d(segmentation_node) -> None:
    segmentation_node.CreateClosedSurfaceRepresentation()


def fuse_pet_on_ct(pet_node, ct_node) -> None:
    """CT as background, PET (PET-Heat colour table, SUV 0-10) as foreground at 40 %."""
    display = pet_node.GetDisplayNode()
    if display is None:
        pet_node.CreateDefaultDisplayNodes()
        display = pet_node.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLPETProceduralColorNodePET-Heat")
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 10.0)
    if ct_node is not None:
        slicer.util.setSliceViewerLayers(background=ct_node, foreground=pet_node, foregroundOpacity=0.4, fit=True)
    else:
        slicer.util.setSliceViewerLayers(background=pet_node, fit=True)


def last_point_ras(markups_node):
    """The last placed control point of a markups node in RAS, or None."""
    n = markups_node.GetNumberOfControlPoints() if markups_node is not None else 0
    if n == 0:
        return None
    point = [0.0, 0.0, 0.0]
    markups_node.GetNthControlPointPositionWorld(n - 1, point)
    return point
