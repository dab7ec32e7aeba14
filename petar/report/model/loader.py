"""Load a local PETAR-4B (`lamed_phi3`) checkpoint folder into our own network, shard by shard.

The network is built on the 'meta' device (no memory); each tensor is then read with `safetensors.safe_open`,
converted to the target dtype and device and put in place, so a 16 GB float32 checkpoint loaded as bf16 needs
about 8 GB plus one tensor, never the float32 copy. Every key is checked: a missing shard, a missing or unexpected
tensor, a shape that differs (vocab size included) → `InputError` naming the file and key; no folder or no
config.json / weights → `ModelMissingError`. Nothing here runs remote code.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from ...errors import InputError, ModelMissingError
from .config import PetarConfig, read_config
from .lamed import build_network, reset_rotary

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}
# Decoder Linears that bitsandbytes may quantise; the vision towers, projector, embeddings and lm_head stay as they are.
_QUANTIZABLE = ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")
TOKENIZER_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")
_CHUNK_BYTES = 1 << 30


def resolve_device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available here: use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r} is not supported: use auto, cpu or cuda[:N]")
    return dev


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported: use auto, fp32, bf16 or fp16")
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if str(dtype).lower() not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use auto, fp32, bf16 or fp16")
    return _DTYPES[str(dtype).lower()]


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of the checkpoint: the shards named by the index, or the single model.safetensors."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{index} is not a readable safetensors index ({e}): re-download the model") from None
        files = []
        for name in names:
            path = folder / name
            if Path(name).name != name or not path.is_file():
                raise InputError(f"shard {name} named by {index} is missing from {folder}: re-download the model")
            files.append(path)
        return files
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise ModelMissingError(f"no model.safetensors or model.safetensors.index.json in {folder}: download the "
                            f"weights (petar models pull) or point to the complete checkpoint folder")


def _set_tensor(net: nn.Module, key: str, tensor: torch.Tensor) -> None:
    owner, _, name = key.rpartition(".")
    module = net.get_submodule(owner)
    module._parameters[name] = nn.Parameter(tensor, requires_grad=False)


def _quantized_linear(linear: nn.Linear, weight: torch.Tensor, mode: str, dtype, device) -> nn.Module:
    """A bitsandbytes layer holding `weight` (quantised when moved to the CUDA device). Untested without a GPU."""
    import bitsandbytes as bnb

    w = weight.to(torch.float16 if dtype == torch.float32 else dtype)
    if mode == "4bit":
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, compute_dtype=dtype,
                                  quant_type="nf4", device="meta")
        layer.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
    else:
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=False, has_fp16_weights=False,
                                    threshold=6.0, device="meta")
        layer.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
    return layer.to(device)


def _index_tensors(files: list[Path], expected: dict, cfg: PetarConfig, skip: set) -> dict:
    """Pass 1, headers only: key → file for every tensor, refusing duplicates, strangers and wrong shapes."""
    from safetensors import SafetensorError, safe_open

    where: dict[str, Path] = {}
    shapes: dict[str, tuple] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    if key in skip:
                        continue
                    if key in where:
                        raise InputError(f"tensor {key} is stored twice ({where[key].name} and {path.name})")
                    if key not in expected:
                        raise InputError(f"{path}: unexpected tensor {key} (not part of a lamed_phi3 model with "
                                         f"this config.json): is this a PETAR-4B checkpoint?")
                    where[key], shapes[key] = path, tuple(f.get_slice(key).get_shape())
        except SafetensorError as e:
            raise InputError(f"{path} is not a readable safetensors file ({e}): re-download the model") from None
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        if key in shapes and key in expected and shapes[key] != expected[key]:
            raise InputError(f"{where[key]}: {key} has shape {list(shapes[key])} but config.json says vocab_size "
                             f"{cfg.vocab_size} x hidden_size {cfg.hidden_size}: config and weights do not belong "
                             f"together")
    for key, shape in shapes.items():
        if shape != expected[key]:
            raise InputError(f"{where[key]}: tensor {key} has shape {list(shape)}, config.json implies "
                             f"{list(expected[key])}")
    missing = [k for k in expected if k not in where]
    if missing:
        named = files[0] if len(files) == 1 else files[0].parent / "model.safetensors.index.json"
        raise InputError(f"{named}: {len(missing)} tensor(s) missing, first {missing[0]}: the checkpoint is "
                         f"incomplete or not a PETAR-4B model")
    return where


def _place(net: nn.Module, key: str, tensor: torch.Tensor, device, dtype, quantize) -> None:
    owner = key.rpartition(".")[0]
    if quantize and owner.startswith("model.layers.") and owner.endswith(_QUANTIZABLE):
        parent, _, child = owner.rpartition(".")
        setattr(net.get_submodule(parent), child,
                _quantized_linear(net.get_submodule(owner), tensor, quantize, dtype, device))
        return
    tensor = tensor.to(device=device)
    if tensor.is_floating_point():
        tensor = tensor.to(dtype=dtype)
    _set_tensor(net, key, tensor)


def load_weights(net: nn.Module, cfg: PetarConfig, files: list[Path], device, dtype, quantize=None) -> None:
    """Check every name and shape (headers only), then stream each tensor into `net` (built on meta)."""
    from safetensors import SafetensorError, safe_open

    expected = {k: tuple(p.shape) for k, p in net.named_parameters()}
    skip = set()
    if cfg.tie_word_embeddings:                 # lm_head shares the embedding; a stored copy is not needed
        expected.pop("lm_head.weight", None)
        skip.add("lm_head.weight")
    where = _index_tensors(files, expected, cfg, skip)
    for path in files:
        keys = [k for k, p in where.items() if p == path]
        # Reopen the file every ~1 GiB so the memory-mapped pages already converted are let go.
        chunks, size = [[]], 0
        for key in keys:
            if size > _CHUNK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(key)
            size += 4 * math.prod(expected[key])
        for chunk in chunks:
            try:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    for key in chunk:
                        _place(net, key, f.get_tensor(key), device, dtype, quantize)
            except SafetensorError as e:
                raise InputError(f"{path} could not be read ({e}): re-download the model") from None
    if cfg.tie_word_embeddings:
        net.lm_head.weight = net.model.embed_tokens.weight
    reset_rotary(net, device)
    leftover = [n for n, t in list(net.named_parameters()) + list(net.named_buffers()) if t.is_meta]
    if leftover:
        raise InputError(f"internal: {leftover[0]} was not loaded")


def load_tokenizer(folder: Path, max_length: int = 768):
    """The tokenizer as the official inference loads it (slow Llama/SentencePiece semantics, right padding).

    Loaded from `tokenizer.model` + `tokenizer_config.json` (+ added/special tokens): a `tokenizer.json` beside
    them is ignored, as `use_fast=False` ignores it, so the ids are those of the official slow tokenizer.
    """
    import shutil
    import tempfile

    from transformers import LlamaTokenizer

    conf_path = folder / "tokenizer_config.json"
    try:
        conf = json.loads(conf_path.read_text(encoding="utf-8")) if conf_path.is_file() else {}
    except (OSError, ValueError) as e:
        raise InputError(f"{conf_path} is not readable JSON ({e}): re-download the model") from None
    cls = conf.get("tokenizer_class") or "LlamaTokenizer"
    if cls not in TOKENIZER_CLASSES:
        raise InputError(f"{conf_path}: tokenizer_class {cls!r} is not a Llama/Phi-3 tokenizer")
    if not (folder / "tokenizer.model").is_file():
        raise ModelMissingError(f"no tokenizer.model in {folder}: the PETAR tokenizer files are missing; "
                                f"re-download the model")
    with tempfile.TemporaryDirectory(prefix="petar_tok_") as tmp:
        for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, Path(tmp) / name)
        try:
            return LlamaTokenizer.from_pretrained(tmp, model_max_length=max_length, padding_side="right")
        except (OSError, ValueError, RuntimeError) as e:
            raise InputError(f"the tokenizer in {folder} could not be loaded ({e}): re-download the model") from None


def generation_eos(folder: Path, cfg: PetarConfig) -> tuple:
    """End-of-sequence ids: generation_config.json's list (as `generate` uses it), else config.json's."""
    path = folder / "generation_config.json"
    if path.is_file():
        try:
            eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError, AttributeError) as e:
            raise InputError(f"{path} is not readable JSON ({e}): re-download the model") from None
        if isinstance(eos, int):
            return (eos,)
        if isinstance(eos, list) and eos:
            return tuple(int(e) for e in eos)
    return cfg.eos_token_id


def load_petar_folder(folder, device="auto", dtype="auto", quantize=None):
    """Load a local PETAR-4B checkpoint folder → `PetarModel` (see petar_model.PetarModel)."""
    from .petar_model import PetarModel

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelMissingError(f"PETAR model folder not found: {folder}: download it (petar models pull) or "
                                f"give the folder that holds config.json and the weights")
    cfg = read_config(folder)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if quantize not in (None, "4bit", "8bit"):
        raise InputError(f"unknown quantize {quantize!r}: use 4bit, 8bit or none")
    if quantize:
        if dev.type != "cuda":
            raise InputError(f"quantize={quantize} needs a CUDA device (bitsandbytes); this run is on {dev.type}: "
                             f"drop the quantisation or use a GPU")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise InputError(f"quantize={quantize} needs the bitsandbytes package: pip install bitsandbytes") from None
    files = weight_files(folder)
    tokenizer = load_tokenizer(folder)
    if len(tokenizer) > cfg.vocab_size:
        raise InputError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but config.json's vocab_size is "
                         f"{cfg.vocab_size}: tokenizer and model do not belong together")
    net = build_network(cfg, device="meta")
    load_weights(net, cfg, files, dev, dt, quantize)
    net.eval()
    return PetarModel(net, tokenizer, cfg, dev, dt, eos_token_ids=generation_eos(folder, cfg), folder=folder,
                      quantize=quantize)
