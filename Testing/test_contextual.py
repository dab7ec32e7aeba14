"""ConTEXTual Net 3D: network shape, phantom dataset, CPU training smoke run, resume, checkpoints, inference, errors.

Everything is built here: a tiny BERT (hidden 32, 2 layers) with a word-level vocab, a 3-case phantom dataset of
60×32×32 voxels, the tiny plans. Training runs through the CLI functions (a local parser with the two subcommands).
"""
from __future__ import annotations

import json
import shutil
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("dynamic_network_architectures")

from petar.cli.grounding_cmd import add_make_grounding_dataset, add_train_grounding  # noqa: E402
from petar.cli.parser import Parser  # noqa: E402
from petar.errors import InputError, ModelMissingError, PetarError  # noqa: E402
from petar.grounding.contextual import ContextualPrediction, load_contextual  # noqa: E402
from petar.grounding.contextual import predict as predict_mod  # noqa: E402
from petar.grounding.contextual.network import build_network  # noqa: E402
from petar.grounding.contextual.plans import make_plans, network_kwargs  # noqa: E402
from petar.grounding.contextual.text import TextEncoder  # noqa: E402
from petar.grounding.contextual.train import dice_ce_loss, lr_at  # noqa: E402
from petar.io import read_mask, read_pet, read_volume  # noqa: E402
from petar.lesion.components import count_components  # noqa: E402
from petar.volume import Volume  # noqa: E402

STEPS_FIRST, STEPS_RESUMED = 24, 32
WORDS = ("[PAD] [UNK] [CLS] [SEP] [MASK] fdg - avid left right axillary node lung nodule liver lesion splenic iliac "
         "bone external obturator supraclavicular mediastinal hypermetabolic measuring cm with suv max of series "
         "image intense uptake axial there is an increased in the slice , . ( ) : a").split()


def run_cli(argv) -> int:
    """The two subcommands in a local `petar`-style parser; PetarError → its exit code, as petar.cli.main does."""
    parser = Parser(prog="petar")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    add_make_grounding_dataset(sub)
    add_train_grounding(sub)
    args = parser.parse_args([str(a) for a in argv])
    try:
        return int(args.run(args) or 0)
    except PetarError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code


@pytest.fixture(scope="module")
def text_encoder_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("text_encoder")
    vocab = list(dict.fromkeys(WORDS + list("abcdefghijklmnopqrstuvwxyz0123456789")))
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    folder = root / "tiny-bert"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    from petar.grounding.dataset_phantom import make_grounding_dataset

    out = tmp_path_factory.mktemp("grounding") / "data"
    make_grounding_dataset(out, cases=3, seed=0, shape=(60, 32, 32), spacing=(5.0, 5.0, 5.0))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset_dir, text_encoder_dir):
    """Train STEPS_FIRST steps, keep a copy of that checkpoint, then --resume to STEPS_RESUMED."""
    model = tmp_path_factory.mktemp("model") / "ctx"
    base = ["train-grounding", "--data", dataset_dir, "--out", model, "--config", "tiny", "--device", "cpu",
            "--no-progress"]
    assert run_cli(base + ["--text-encoder", text_encoder_dir, "--steps", STEPS_FIRST]) == 0
    first = torch.load(model / "fold_0" / "checkpoint_latest.pth", weights_only=True)
    assert run_cli(base + ["--steps", STEPS_RESUMED, "--resume"]) == 0
    return model, first


# ---- dataset -------------------------------------------------------------------------------------------------------
def test_phantom_dataset_has_one_sentence_and_label_per_lesion(dataset_dir):
    meta = json.loads((dataset_dir / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "PET", "1": "CT"}
    rows = [json.loads(line) for line in (dataset_dir / "sentences.jsonl").read_text().splitlines()]
    assert len(rows) == meta["numTraining"] >= 9
    for row in rows:
        truth = json.loads((dataset_dir / "truth" / f"{row['case']}.json").read_text())
        label = int(row["label_file"].rsplit("_", 1)[1].split(".")[0])
        t = truth["lesions"][label - 1]
        assert t["name"].split()[-1] in row["sentence"] and f"{t['suv_max']:.1f}" in row["sentence"]
        assert str(t["axial_slice"]) in row["sentence"] and row["tracer"] == "FDG"
        pet = read_pet(dataset_dir / "imagesTr" / f"{row['case']}_0000.nii.gz")
        mask = read_mask(dataset_dir / row["label_file"], pet).array
        assert set(np.unique(mask)) == {0, 1} and count_components(mask > 0) == 1
        assert abs(float(pet.array[mask > 0].max()) - t["suv_max"]) < 1e-6
    assert (dataset_dir / "imagesTr" / "case_002_0001.nii.gz").is_file()


def test_dataset_refuses_a_used_folder_and_leaves_nothing_on_failure(dataset_dir, tmp_path, monkeypatch):
    from petar.grounding import dataset_phantom

    assert run_cli(["make-grounding-dataset", "--out", dataset_dir]) == 2
    calls = []

    def broken(*a, **kw):
        calls.append(1)
        if len(calls) > 2:
            raise InputError("boom")
        return real(*a, **kw)

    import petar.phantom
    real = petar.phantom.make_phantom
    monkeypatch.setattr(petar.phantom, "make_phantom", broken)
    with pytest.raises(InputError):
        dataset_phantom.make_grounding_dataset(tmp_path / "ds", cases=3, shape=(60, 32, 32), spacing=(5, 5, 5))
    assert list(tmp_path.iterdir()) == []


# ---- network -------------------------------------------------------------------------------------------------------
def test_text_attention_sits_after_upsampling_of_the_three_deepest_decoder_stages():
    net = build_network(make_plans("tiny"), text_dim=32)
    dec = net.decoder
    assert len(net.text_attention) == 3 and len(dec.stages) == 4
    assert net.attention_channels == [dec.transpconvs[s].out_channels for s in range(3)] == [24, 16, 8]
    calls = []
    for s, m in enumerate(dec.transpconvs):
        m.register_forward_hook(lambda *_, s=s: calls.append(f"up{s}"))
    for s, m in enumerate(dec.stages):
        m.register_forward_hook(lambda *_, s=s: calls.append(f"stage{s}"))
    for s, m in enumerate(net.text_attention):
        m.register_forward_hook(lambda *_, s=s: calls.append(f"text{s}"))
    out = net(torch.rand(1, 2, 32, 32, 32), torch.randn(1, 7, 32))
    assert out.shape == (1, 2, 32, 32, 32)
    assert calls == ["up0", "text0", "stage0", "up1", "text1", "stage1", "up2", "text2", "stage2", "up3", "stage3"]
    default = build_network(make_plans("default"), text_dim=768)
    assert default.attention_channels == [192, 128, 96]
    assert type(default.encoder).__name__ == "ResidualEncoder"


def test_gating_is_features_times_tanh_of_attention():
    net = build_network(make_plans("tiny"), text_dim=32)
    block = net.text_attention[0]
    x, text = torch.rand(1, 24, 2, 3, 4), torch.randn(1, 5, 32)
    kv = block.text_proj(text)
    att, _ = block.attention(x.flatten(2).transpose(1, 2), kv, kv)
    expected = x * torch.tanh(att.transpose(1, 2).reshape(x.shape))
    torch.testing.assert_close(block(x, text), expected)


def test_state_dict_keeps_dna_names():
    plans = make_plans("tiny")
    cls, kwargs = network_kwargs(plans)
    dna_keys = set(cls(**kwargs).state_dict())
    ours = set(build_network(plans, 32).state_dict())
    assert ours - dna_keys == {k for k in ours if k.startswith("text_attention.")}
    assert dna_keys <= ours


# ---- training, checkpoints, resume ---------------------------------------------------------------------------------
def test_training_loss_falls_and_folder_has_the_documented_files(trained):
    model, first = trained
    for name in ("plans.json", "dataset.json", "text_encoder.json", "fold_0/checkpoint_latest.pth",
                 "fold_0/checkpoint_final.pth"):
        assert (model / name).is_file(), name
    loss = first["logging"]["loss"]
    assert len(loss) == STEPS_FIRST and np.mean(loss[-5:]) < np.mean(loss[:5])
    assert first["logging"]["val_f1"] and first["plans_name"] == "ContextualNet3D_tiny"
    cfg = json.loads((model / "text_encoder.json").read_text())
    assert cfg["max_length"] == 32 and cfg["id_or_dir"].endswith("tiny-bert")


def test_resume_continues_from_the_saved_step(trained, dataset_dir):
    model, first = trained
    final = torch.load(model / "fold_0" / "checkpoint_final.pth", weights_only=True)
    assert first["step"] == STEPS_FIRST and final["step"] == STEPS_RESUMED
    assert final["logging"]["loss"][:STEPS_FIRST] == first["logging"]["loss"]
    assert len(final["logging"]["loss"]) == STEPS_RESUMED
    assert run_cli(["train-grounding", "--data", dataset_dir, "--out", model, "--resume", "--steps", STEPS_RESUMED,
                    "--no-progress"]) == 2     # already there: nothing to do is an error, not a silent no-op


def test_new_run_refuses_an_existing_model_and_resume_needs_one(trained, dataset_dir, tmp_path, capsys):
    model, _ = trained
    assert run_cli(["train-grounding", "--data", dataset_dir, "--out", model, "--steps", 2, "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert run_cli(["train-grounding", "--data", dataset_dir, "--out", tmp_path / "m", "--resume",
                    "--no-progress"]) == 2


def _plain(obj) -> bool:
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return True
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in obj.items())
    return False


def test_checkpoints_hold_only_weights_only_objects(trained):
    model, _ = trained
    for name in ("checkpoint_latest.pth", "checkpoint_final.pth"):
        doc = torch.load(model / "fold_0" / name, weights_only=True)
        assert _plain(doc)
        assert {"network_weights", "optimizer_state", "scheduler", "epoch", "step", "plans_name", "text_encoder",
                "init_args"} <= set(doc)


# ---- inference -----------------------------------------------------------------------------------------------------
def _case(dataset_dir, case="case_000"):
    return (read_pet(dataset_dir / "imagesTr" / f"{case}_0000.nii.gz"),
            read_volume(dataset_dir / "imagesTr" / f"{case}_0001.nii.gz"))


def test_load_and_predict_end_to_end_on_the_pet_grid(trained, dataset_dir):
    model_dir, _ = trained
    model = load_contextual(model_dir, device="cpu")
    pet, ct = _case(dataset_dir)
    res = model.predict(pet, ct, "FDG-avid left axillary node, SUVmax 7.4, image 30.")
    assert isinstance(res, ContextualPrediction)
    assert res.mask.same_grid(pet) and res.mask.array.dtype == np.uint8
    assert count_components(res.mask.array > 0) <= 1
    assert res.info["mirroring"] is False and res.info["step"] == STEPS_RESUMED
    assert "7.4" not in res.info["text_for_encoder"] and "30" not in res.info["text_for_encoder"]
    with pytest.raises(InputError, match="needs the CT"):
        model.predict(pet, None, "left axillary node")
    with pytest.raises(InputError, match="empty"):
        model.predict(pet, ct, "   ")
    far = Volume(ct.array, ct.spacing, (5000.0, 5000.0, 5000.0))
    with pytest.raises(InputError, match="do not overlap"):
        model.predict(pet, far, "left axillary node")


def test_prediction_reports_window_progress_and_stops_when_asked(trained, dataset_dir):
    from petar.errors import Cancelled
    from petar.grounding import ground
    from petar.service.jobs import JobManager

    model_dir, _ = trained
    pet, ct = _case(dataset_dir)
    seen = []
    ground("FDG-avid left axillary node", pet, ct, engine="contextual", model=model_dir, device="cpu",
           on_progress=seen.append)
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 1
    calls = []
    with pytest.raises(Cancelled):
        ground("left axillary node", pet, ct, engine="contextual", model=model_dir, device="cpu",
               should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3                                       # stopped before the third window, not at the end
    # as a service job: the fraction is published, and a cancel mid-prediction ends the job as cancelled
    jobs = JobManager(queue_size=2)
    job = jobs.submit("ground", lambda j: ground("left axillary node", pet, ct, engine="contextual",
                                                 model=model_dir, device="cpu",
                                                 on_progress=lambda f: (j.update(fraction=f),
                                                                        f >= 0.5 and j.cancel_requested.set()),
                                                 should_stop=j.should_stop))
    deadline = time.monotonic() + 60
    while job.status not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
        job.wait_change(job.version, 1.0)
    doc = job.to_dict()
    jobs.shutdown()
    assert doc["status"] == "cancelled" and 0.5 <= doc["fraction"] < 1.0 and doc["error"] is None


class _ThresholdNet(torch.nn.Module):
    """Stands in for the network: lesion where normalised PET > 0.45 (SUV > 4.5), whatever the text."""

    def forward(self, x, text):
        fg = (x[:, :1] > 0.45).float() * 20 - 10
        return torch.cat([-fg, fg], 1)


def test_prediction_keeps_one_component_and_never_flips(dataset_dir, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("inference must not flip")

    for obj, name in ((torch, "flip"), (torch.Tensor, "flip"), (torch, "fliplr"), (np, "flip"), (np, "fliplr")):
        monkeypatch.setattr(obj, name, refuse)
    pet, ct = _case(dataset_dir)
    plans = make_plans("tiny")
    res = predict_mod.predict_volume(_ThresholdNet(), torch.zeros(1, 4, 32), pet, ct, plans, "cpu")
    assert res.components >= 2 and count_components(res.mask.array) == 1
    assert res.mean_probability > 0.7 and res.mask.same_grid(pet)
    assert float(pet.array[res.mask.array > 0].max()) > 4.5
    import inspect
    import re

    assert re.search(r"flip\w*\(", inspect.getsource(predict_mod)) is None   # no flip call in the predictor


def test_keep_best_component_prefers_the_highest_mean_probability():
    prob = np.zeros((10, 10, 10), np.float32)
    prob[1:3, 1:3, 1:3] = 0.95          # small, confident
    prob[5:9, 5:9, 5:9] = 0.6           # large, unsure
    mask, mean, n = predict_mod.keep_best_component(prob)
    assert n == 2 and mask[1, 1, 1] == 1 and mask[6, 6, 6] == 0 and mean == pytest.approx(0.95)


def test_sliding_window_tiles_cover_the_volume_with_gaussian_weights():
    for size, patch in ((50, 32), (32, 32), (100, 32), (7, 32)):
        starts = predict_mod.window_starts(size, patch, 0.5)
        assert starts[0] == 0 and (size <= patch or starts[-1] == size - patch)
        assert all(b - a <= patch * 0.5 + 1 for a, b in zip(starts, starts[1:]))
    g = predict_mod.gaussian_importance((8, 8, 8))
    assert g.max() == pytest.approx(1.0) and g.min() > 0


# ---- errors --------------------------------------------------------------------------------------------------------
def test_plans_that_do_not_match_the_weights_name_plans_json(trained, tmp_path):
    model_dir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("preprocessed"))
    plans = json.loads((copy / "plans.json").read_text())
    plans["architecture"]["arch_kwargs"]["features_per_stage"][-1] = 40
    (copy / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(InputError, match=r"plans\.json does not match .*first mismatching key 'encoder\.stages\.4"):
        load_contextual(copy, device="cpu")


def test_missing_text_encoder_or_checkpoint_is_model_missing(trained, tmp_path, dataset_dir):
    with pytest.raises(ModelMissingError, match="no-such-encoder"):
        TextEncoder(str(tmp_path / "no-such-encoder"), 32)
    model_dir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("preprocessed"))
    (copy / "text_encoder.json").write_text(json.dumps({"id_or_dir": str(tmp_path / "gone"), "max_length": 32}))
    with pytest.raises(ModelMissingError, match="gone"):
        load_contextual(copy, device="cpu")
    (copy / "fold_0" / "checkpoint_final.pth").unlink()
    with pytest.raises(ModelMissingError, match="checkpoint_final.pth"):
        load_contextual(copy, device="cpu")
    assert run_cli(["train-grounding", "--data", dataset_dir, "--out", tmp_path / "m2", "--steps", 1,
                    "--text-encoder", tmp_path / "absent", "--no-progress"]) == 3


def test_mirroring_in_plans_is_refused(trained, tmp_path):
    model_dir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("preprocessed"))
    plans = json.loads((copy / "plans.json").read_text())
    plans["inference"]["mirroring"] = True
    (copy / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(InputError, match="mirroring"):
        load_contextual(copy, device="cpu")


def test_loss_and_schedule():
    target = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    target[0, 2:5, 2:5, 2:5] = 1
    good = torch.stack([(target == 0).float(), (target == 1).float()], 1) * 20 - 10
    assert dice_ce_loss(good, target) < 0.01 < dice_ce_loss(-good, target)
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1) and lr_at(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 100) == pytest.approx(1.0) and lr_at(100, 1.0, 10, 100) == pytest.approx(0.0)
    assert lr_at(55, 1.0, 10, 100) == pytest.approx(0.5)


def test_a_broken_dataset_is_refused_naming_the_line(dataset_dir, tmp_path, capsys):
    copy = tmp_path / "data"
    shutil.copytree(dataset_dir, copy)
    lines = (copy / "sentences.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"case": "case_000", "label_file": "labelsTr/missing.nii.gz", "sentence": "x"})
    (copy / "sentences.jsonl").write_text("\n".join(lines) + "\n")
    assert run_cli(["train-grounding", "--data", copy, "--out", tmp_path / "m", "--no-progress"]) == 2
    assert "line 2" in capsys.readouterr().err and not (tmp_path / "m").exists()
    (copy / "dataset.json").unlink()
    assert run_cli(["train-grounding", "--data", copy, "--out", tmp_path / "m", "--no-progress"]) == 2


def test_petar_ground_cli_runs_the_contextual_engine_from_a_trained_folder(trained, dataset_dir, tmp_path, cli):
    import json

    model_dir, _ = trained
    pet = dataset_dir / "imagesTr" / "case_000_0000.nii.gz"
    ct = dataset_dir / "imagesTr" / "case_000_0001.nii.gz"
    r = cli("ground", "--engine", "contextual", "--model", model_dir, "--device", "cpu", "--pet", pet, "--ct", ct,
            "--text", "FDG-avid left axillary node, SUVmax 7.4, image 30.", "--out", tmp_path / "m.nii.gz",
            "--json", tmp_path / "g.json")
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["engine"] == "contextual" and doc["status"] in ("found", "not_found")
    assert (tmp_path / "m.nii.gz").exists() == (doc["status"] == "found")
    r = cli("ground", "--engine", "contextual", "--pet", pet, "--ct", ct, "--text", "left axillary node",
            "--out", tmp_path / "x.nii.gz")
    assert r.code == 3 and "train-grounding" in r.err
