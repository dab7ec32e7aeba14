"""Connected components through SimpleITK (C++ speed, no scipy)."""
from __future__ import annotations

import numpy as np


def label_components(binary: np.ndarray, full_connectivity: bool = False) -> tuple[np.ndarray, int]:
    """(labels, count): 6-connected components by default, 26-connected with `full_connectivity`."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(binary, dtype=np.uint8))
    cc = sitk.ConnectedComponent(img, full_connectivity)
    labels = sitk.GetArrayFromImage(cc)
    return labels, int(labels.max()) if labels.size else 0


def count_components(binary: np.ndarray) -> int:
    """Number of 26-connected pieces (how a reader would count separate blobs)."""
    return label_components(binary, full_connectivity=True)[1]


def component_at(binary: np.ndarray, seed_zyx, full_connectivity: bool = False) -> np.ndarray:
    """The component of `binary` that contains `seed_zyx` (all False when the seed is not in `binary`)."""
    seed = tuple(int(v) for v in seed_zyx)
    if not binary[seed]:
        return np.zeros_like(binary, dtype=bool)
    labels, _ = label_components(binary, full_connectivity)
    return labels == labels[seed]
