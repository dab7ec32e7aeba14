"""The frozen text encoder: a BERT/RoBERTa-family model (RadBERT by default) giving per-token features.

As the paper: the sentence has its SUV and slice numbers removed first (`petar.grounding.parser.text_for_encoder`,
so the network cannot read the answer off the numbers), is tokenised padded to `max_length` (512 for the paper;
truncated beyond), and the encoder's `last_hidden_state` (1, max_length, hidden) — every token, no pooling — is
what the decoder attends to. The encoder never trains (`requires_grad=False`, eval mode) and never runs remote code.

`id_or_dir` is a local folder (config.json + weights + tokenizer files) or a Hugging Face hub id; a hub id is taken
from the local Hugging Face cache or downloaded by transformers. Anything missing → ModelMissingError (exit 3).
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path

import torch

from ...errors import InputError, ModelMissingError

log = logging.getLogger("petar.grounding.contextual")
DEFAULT_TEXT_ENCODER = "StanfordAIMI/RadBERT"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")   # "owner/name" (or a legacy bare name)


def _how_to_get() -> str:
    return (f"download it (e.g. `hf download {DEFAULT_TEXT_ENCODER} --local-dir DIR`) and pass the folder with "
            f"--text-encoder DIR")


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or "\\" in text or not _HUB_ID.match(text)


def encoder_text(sentence: str) -> str:
    """The sentence as the encoder sees it: stripped, SUV and slice numbers removed (the paper's leakage guard)."""
    if not isinstance(sentence, str) or not sentence.strip():
        raise InputError("the finding text is empty: type the sentence that describes the lesion")
    from ..parser import text_for_encoder

    return text_for_encoder(sentence)


class TextEncoder:
    """Frozen encoder + tokenizer. `encode(sentence)` → float32 tensor (1, max_length, hidden) on `device`."""

    def __init__(self, id_or_dir: str | None = None, max_length: int = 512, device="cpu", cache_size: int = 256):
        self.id_or_dir = str(id_or_dir or DEFAULT_TEXT_ENCODER)
        self.max_length = int(max_length)
        if self.max_length < 4:
            raise InputError(f"text max_length must be >= 4, got {max_length}")
        self.device = torch.device(device)
        self.tokenizer, self.model = _load(self.id_or_dir)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and self.max_length > int(limit):
            raise InputError(f"text max_length {self.max_length} exceeds what {self.id_or_dir} supports "
                             f"({limit} positions)")
        self.model.to(self.device).eval().requires_grad_(False)
        self.hidden_size = int(self.model.config.hidden_size)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = int(cache_size)

    def describe(self) -> dict:
        """The text_encoder.json of a model folder."""
        return {"id_or_dir": self.id_or_dir, "max_length": self.max_length, "hidden_size": self.hidden_size,
                "model_type": getattr(self.model.config, "model_type", None)}

    @torch.no_grad()
    def encode(self, sentence: str) -> torch.Tensor:
        text = encoder_text(sentence)
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        tok = self.tokenizer(text, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.model(**tok).last_hidden_state.float()
        if self._cache_size > 0:
            self._cache[text] = out
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out


def _load(id_or_dir: str):
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise ModelMissingError("the contextual engine needs torch and transformers: pip install 'petar[model]'") \
            from None
    path = Path(id_or_dir).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelMissingError(f"text encoder folder {path} has no config.json: it is not a transformers "
                                    f"model folder; {_how_to_get()}")
        source, attempts = str(path), (True,)
    elif path.exists() or _looks_like_path(id_or_dir):
        raise ModelMissingError(f"text encoder folder {id_or_dir} not found: {_how_to_get()}")
    else:
        source, attempts = id_or_dir, (True, False)    # the Hugging Face cache first, then a download
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()   # transformers' "Loading weights" bar is noise on our stderr
    try:
        for local_only in attempts:
            try:
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
                model = AutoModel.from_pretrained(source, local_files_only=local_only, trust_remote_code=False)
                break
            except (OSError, ValueError) as e:
                if local_only is attempts[-1]:
                    raise
                log.info("text encoder %s is not in the local cache (%s): downloading", source, type(e).__name__)
    except (OSError, ValueError) as e:
        where = "folder" if len(attempts) == 1 else "hub id (not in the local cache and not downloadable here)"
        raise ModelMissingError(f"text encoder {where} {id_or_dir} could not be loaded ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]}); {_how_to_get()}") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    if not hasattr(model, "config") or not hasattr(model.config, "hidden_size"):
        raise InputError(f"{id_or_dir} is not a BERT/RoBERTa-family encoder (no hidden_size in its config)")
    return tokenizer, model
