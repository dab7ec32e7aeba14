"""PETAR-4B (`lamed_phi3`): our own implementation, state-dict compatible with the official checkpoint.

Needs torch, transformers, safetensors and sentencepiece (imported here, so import this package only when the
model is wanted: `import petar` stays light). Never uses remote code.

    model = load_petar_folder("/path/to/PETAR-4B", device="auto", dtype="auto")
    ids = model.prompt_ids()                      # "<im_patch>" * N + question, as the official inference
    new_ids = model.generate(views, ids)          # views: pet, mask, ct, pet_focal, mask_focal, ct_focal
    text = model.decode(new_ids)
"""
from .config import PetarConfig, read_config
from .loader import load_petar_folder
from .petar_model import DEFAULT_QUESTION, PetarModel

__all__ = ["DEFAULT_QUESTION", "PetarConfig", "PetarModel", "load_petar_folder", "read_config"]
