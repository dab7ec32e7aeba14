"""Our `lamed_phi3` (PETAR-4B) implementation against the tiny checkpoint written and run by the official code.

Testing/data/petar_tiny_a holds the checkpoint, fixed inputs and the official outputs (README.md there). float32 on
the CPU: features and logits within 1e-4, greedy ids and text exactly equal. Then batching, streaming,
cancellation, half precision, sharded checkpoints and every refusal of a bad checkpoint.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytest.importorskip("sentencepiece")

from safetensors.torch import load_file, save_file  # noqa: E402

from petar.errors import InputError, ModelMissingError  # noqa: E402
from petar.report.model import DEFAULT_QUESTION, load_petar_folder, read_config  # noqa: E402
from petar.report.model.lamed import build_network  # noqa: E402

TINY = Path(__file__).parent / "data" / "petar_tiny_a"
TOL = dict(atol=1e-4, rtol=1e-4)


def _json(name):
    return json.loads((TINY / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model():
    return load_petar_folder(TINY, device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def inputs():
    z = np.load(TINY / "inputs.npz")
    views = {"pet": z["pets"], "mask": z["masks"], "ct": z["cts"], "pet_focal": z["pet_focals"],
             "mask_focal": z["mask_focals"], "ct_focal": z["ct_focals"]}
    return views, torch.from_numpy(z["input_ids"])


def _copy(tmp_path, name="ckpt") -> Path:
    dst = tmp_path / name
    dst.mkdir()
    for f in TINY.iterdir():
        if f.suffix != ".npy" and f.name != "inputs.npz":
            shutil.copyfile(f, dst / f.name)
    return dst


# ---- exactness against the official code ------------------------------------------------------------------
def test_config_sizes_and_defaults(tmp_path):
    cfg = read_config(TINY)
    assert (cfg.vit_hidden_size, cfg.vit_mlp_dim, cfg.vit_num_layers, cfg.vit_num_heads) == (96, 192, 2, 4)
    assert cfg.grid == (2, 4, 4) and cfg.pooled_grid == (1, 2, 2) and cfg.num_image_tokens == 4
    assert cfg.vision_width == 192 and cfg.use_mask and cfg.use_ct and cfg.classification
    raw = _json("config.json")
    for k in ("vit_hidden_size", "vit_mlp_dim", "vit_num_layers", "vit_num_heads", "mm_hidden_size"):
        raw.pop(k)
    raw["auto_map"] = {"AutoModelForCausalLM": "remote.Code"}          # ignored, never executed
    (tmp_path / "config.json").write_text(json.dumps(raw))
    real = read_config(tmp_path)
    assert (real.vit_hidden_size, real.vit_mlp_dim, real.vit_num_layers, real.vit_num_heads) == (768, 3072, 12, 12)


def test_state_dict_names_and_shapes_equal_the_official_checkpoint():
    want = {}
    for line in (TINY / "keys.txt").read_text().splitlines():
        key, shape, _ = line.split("\t")
        want[key] = tuple(json.loads(shape))
    net = build_network(read_config(TINY), device="meta")
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want


def test_prompt_ids_equal_the_official_tokenisation(model):
    p = _json("prompt.json")
    assert model.prompt_ids(p["question"])[0].tolist() == p["input_ids"]
    assert DEFAULT_QUESTION == p["question"] and model.prompt_ids()[0].tolist() == p["input_ids"]
    assert model.num_image_tokens == p["num_image_tokens"] and model.image_size == (8, 64, 64)
    assert model.tokenizer.convert_tokens_to_ids("<im_patch>") == p["image_token_id"]


def test_features_and_logits_equal_the_official_outputs(model, inputs):
    views, ids = inputs
    np.testing.assert_allclose(model.vision_features(views).numpy(), np.load(TINY / "expected_vision_features.npy"),
                               **TOL)
    np.testing.assert_allclose(model.image_features(views).numpy(), np.load(TINY / "expected_image_features.npy"),
                               **TOL)
    logits = model.logits(views, ids)
    assert logits.dtype == torch.float32 and tuple(logits.shape) == (1, 26, 527)
    np.testing.assert_allclose(logits.numpy(), np.load(TINY / "expected_logits.npy"), **TOL)
    # the splice is positional: whatever ids sit at positions 1..N, the image features replace them
    other = ids.clone()
    other[0, 1:5] = torch.tensor([7, 8, 9, 10])
    np.testing.assert_array_equal(model.logits(views, other).numpy(), logits.numpy())
    # and a (B, 1, D, H, W) tensor input gives the same as (1, D, H, W) numpy
    tviews = {k: torch.from_numpy(v) for k, v in views.items()}
    np.testing.assert_allclose(model.logits(tviews, ids).numpy(), logits.numpy(), atol=1e-6, rtol=0)


def test_greedy_generation_equals_the_official_generate(model, inputs):
    views, ids = inputs
    expected = _json("expected_generate.json")
    out = model.generate(views, ids, max_new_tokens=12)
    assert out == expected["generated_ids"]
    assert model.decode(out) == expected["text"]
    assert set(model.timing) >= {"vision_ms", "prefill_ms", "decode_ms", "tokens"} and model.timing["tokens"] == 12
    assert model.eos_token_ids == tuple(expected["eos_token_ids"])


# ---- batching, streaming, cancellation, sampling ----------------------------------------------------------
def test_batch_equals_one_by_one_with_different_lengths_and_eos_steps(model, inputs):
    views, _ = inputs
    second = {k: (np.roll(v, -5, axis=-2) if "mask" in k else np.roll(v, 3, axis=-1)) for k, v in views.items()}
    views_list = [views, second, views]
    prompts = [model.prompt_ids(), model.prompt_ids("Which body part?"),
               model.prompt_ids("Describe the lesion in detail please, with SUVmax and region.")]
    assert len({p.shape[1] for p in prompts}) == 3
    singles = [model.generate(v, p, max_new_tokens=10) for v, p in zip(views_list, prompts)]
    assert model.generate_batch(views_list, prompts, max_new_tokens=10) == singles
    # an end-of-sequence id that stops the rows at different steps (one row not at all)
    eos = next(t for t in singles[0][1:6] if t not in singles[1][:8])
    singles_eos = [model.generate(v, p, max_new_tokens=10, eos_token_ids=[eos]) for v, p in zip(views_list, prompts)]
    lengths = [len(s) for s in singles_eos]
    assert len(set(lengths)) >= 2 and singles_eos[0][-1] == eos
    assert model.generate_batch(views_list, prompts, max_new_tokens=10, eos_token_ids=[eos]) == singles_eos
    assert model.timing["batch"] == 3 and model.timing["tokens"] == sum(lengths)


def test_streaming_sees_every_token_and_should_stop_cancels(model, inputs):
    views, ids = inputs
    seen = []
    out = model.generate(views, ids, max_new_tokens=12, on_token=lambda i, t: seen.append((i, t)))
    assert seen == [(0, t) for t in out]
    got = []
    out3 = model.generate(views, ids, max_new_tokens=12, on_token=lambda i, t: got.append(t),
                          should_stop=lambda: len(got) >= 3)
    assert out3 == got == out[:3]
    assert model.generate(views, ids, max_new_tokens=12, should_stop=lambda: True) == []
    streamed = []
    batch = model.generate_batch([views, views], [ids, ids], max_new_tokens=4,
                                 on_token=lambda i, t: streamed.append((i, t)))
    assert batch == [out[:4], out[:4]] and streamed == [(i, t) for t in out[:4] for i in (0, 1)]


def test_sampling_is_seeded_and_top_k_1_is_greedy(model, inputs):
    views, ids = inputs
    a = model.generate(views, ids, max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.9, seed=3)
    b = model.generate(views, ids, max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.9, seed=3)
    assert a == b and len(a) == 8
    greedy = model.generate(views, ids, max_new_tokens=8)
    assert model.generate(views, ids, max_new_tokens=8, do_sample=True, top_k=1, seed=0) == greedy
    with pytest.raises(InputError, match="temperature"):
        model.generate(views, ids, max_new_tokens=2, do_sample=True, temperature=0)


def test_bad_views_and_ids_are_refused(model, inputs):
    views, ids = inputs
    with pytest.raises(InputError, match="image_size"):
        model.logits({**views, "pet": np.zeros((1, 8, 32, 64), np.float32)}, ids)
    with pytest.raises(InputError, match="focal"):
        model.logits({k: v for k, v in views.items() if k != "ct_focal"}, ids)
    with pytest.raises(InputError, match="missing"):
        model.logits({k: v for k, v in views.items() if k != "ct"}, ids)
    with pytest.raises(InputError, match="NaN"):
        model.logits({**views, "pet": np.full_like(views["pet"], np.nan)}, ids)
    with pytest.raises(InputError, match="at least 5"):
        model.logits(views, ids[:, :3])


# ---- dtypes and checkpoint layouts ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [("bf16", 0.25), ("fp16", 0.05)])
def test_half_precision_loads_converted_and_stays_close(inputs, dtype, tol):
    views, ids = inputs
    m = load_petar_folder(TINY, device="cpu", dtype=dtype)
    want = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert m.dtype == want and all(p.dtype == want and p.device.type == "cpu" for p in m.net.parameters())
    expected = np.load(TINY / "expected_logits.npy")
    got = m.logits(views, ids).numpy()
    assert np.abs(got - expected).max() < tol
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


def test_sharded_checkpoint_loads_and_a_missing_shard_is_named(tmp_path, inputs):
    views, ids = inputs
    ckpt = _copy(tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    keys = list(tensors)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    parts = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map = {}
    for name, part in zip(names, parts):
        save_file({k: tensors[k] for k in part}, str(ckpt / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    m = load_petar_folder(ckpt, device="cpu", dtype="fp32")
    np.testing.assert_allclose(m.logits(views, ids).numpy(), np.load(TINY / "expected_logits.npy"), **TOL)
    (ckpt / names[1]).unlink()
    with pytest.raises(InputError, match=names[1]):
        load_petar_folder(ckpt, device="cpu")


def test_bad_checkpoints_are_refused_with_the_file_and_key(tmp_path):
    ckpt = _copy(tmp_path)
    raw = _json("config.json")
    (ckpt / "config.json").write_text(json.dumps({**raw, "model_type": "phi3"}))
    with pytest.raises(InputError, match="config.json.*model_type"):
        load_petar_folder(ckpt, device="cpu")
    (ckpt / "config.json").write_text(json.dumps({**raw, "vocab_size": 530}))
    with pytest.raises(InputError, match=r"model\.safetensors.*embed_tokens.*vocab_size 530"):
        load_petar_folder(ckpt, device="cpu")
    (ckpt / "config.json").write_text(json.dumps(raw))
    tensors = load_file(str(ckpt / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if k != "model.mm_projector.projector.2.bias"},
              str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"model\.safetensors.*model\.mm_projector\.projector\.2\.bias"):
        load_petar_folder(ckpt, device="cpu")
    save_file({**tensors, "model.seg_projector.0.weight": torch.zeros(2, 2)}, str(ckpt / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"model\.safetensors.*unexpected tensor model\.seg_projector\.0\.weight"):
        load_petar_folder(ckpt, device="cpu")
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="model.safetensors"):
        load_petar_folder(ckpt, device="cpu")


def test_missing_model_and_bad_options(tmp_path):
    with pytest.raises(ModelMissingError, match="not found"):
        load_petar_folder(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelMissingError, match="config.json"):
        load_petar_folder(empty)
    (empty / "config.json").write_text((TINY / "config.json").read_text())
    with pytest.raises(ModelMissingError, match="model.safetensors"):
        load_petar_folder(empty, device="cpu")
    assert ModelMissingError.exit_code == 3 and InputError.exit_code == 2
    with pytest.raises(InputError, match="dtype"):
        load_petar_folder(TINY, device="cpu", dtype="int8")
    with pytest.raises(InputError, match="device"):
        load_petar_folder(TINY, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            load_petar_folder(TINY, device="cpu", quantize="4bit")
        with pytest.raises(InputError, match="CUDA"):
            load_petar_folder(TINY, device="cuda")
    with pytest.raises(InputError, match="quantize"):
        load_petar_folder(TINY, device="cpu", quantize="3bit")


def test_conv_patch_embedding_equals_the_perceptron_one():
    from petar.report.model.vision import PatchEmbedding

    torch.manual_seed(0)
    lin = PatchEmbedding(1, (8, 32, 32), (4, 16, 16), 12, "perceptron")
    conv = PatchEmbedding(1, (8, 32, 32), (4, 16, 16), 12, "conv")
    w = lin.patch_embeddings[1].weight.detach()
    with torch.no_grad():
        conv.patch_embeddings.weight.copy_(w.reshape(12, 4, 16, 16, 1).permute(0, 4, 1, 2, 3))
        conv.patch_embeddings.bias.copy_(lin.patch_embeddings[1].bias)
        conv.position_embeddings.copy_(lin.position_embeddings)
        x = torch.rand(2, 1, 8, 32, 32)
        torch.testing.assert_close(conv(x), lin(x), atol=1e-5, rtol=1e-5)


def test_tied_embeddings_checkpoint_without_lm_head(tmp_path, inputs):
    views, ids = inputs
    ckpt = _copy(tmp_path)
    (ckpt / "config.json").write_text(json.dumps({**_json("config.json"), "tie_word_embeddings": True}))
    tensors = load_file(str(ckpt / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if k != "lm_head.weight"}, str(ckpt / "model.safetensors"),
              metadata={"format": "pt"})
    m = load_petar_folder(ckpt, device="cpu", dtype="fp32")
    assert m.net.lm_head.weight is m.net.model.embed_tokens.weight
    assert tuple(m.logits(views, ids).shape) == (1, 26, 527)


def test_tokenizer_json_is_ignored_like_use_fast_false(tmp_path):
    ckpt = _copy(tmp_path)
    (ckpt / "tokenizer.json").write_text("{}")           # a fast-tokenizer file the official slow load never reads
    m = load_petar_folder(ckpt, device="cpu", dtype="fp32")
    assert m.prompt_ids()[0].tolist() == _json("prompt.json")["input_ids"]
