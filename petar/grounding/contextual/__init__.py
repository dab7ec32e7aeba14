"""ConTEXTual Net 3D (Huemann et al., arXiv 2502.00528) for `petar.ground(..., engine="contextual")`.

A 2-channel (PET SUV, CT) 3D U-Net from dynamic_network_architectures with tanh-gated single-head cross-attention
to a frozen BERT/RoBERTa-family text encoder after the upsampling of the three deepest decoder stages; trained by
`petar train-grounding`, stored as an nnU-Net-style folder (checkpoint.py), run by sliding window without mirroring.

    model = load_contextual(model_dir, device="auto")
    result = model.predict(pet, ct, "FDG-avid left axillary node, SUVmax 7.1, image 104")
    result.mask, result.mean_probability, result.components, result.info

Importing this package imports torch; `petar` itself does not import it.
"""
from .checkpoint import ContextualModel, load_contextual
from .predict import ContextualPrediction

__all__ = ["ContextualModel", "ContextualPrediction", "load_contextual"]
