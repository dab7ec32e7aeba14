"""Weights on disk: cache location, pull with a manifest, offline resolution, verification, exit-3 advice."""
import json

import pytest

from petar import InputError, ModelMissingError
from petar.report import weights


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PETAR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fake_downloader(files: dict, commit="abc123def456"):
    """Stands in for the hub: writes `files` into the target, plus things we must never keep."""
    def download(model_id, revision, target):
        target.mkdir(parents=True)
        for name, data in files.items():
            (target / name).write_bytes(data)
        (target / "modeling_m3d_lamed.py").write_text("import os  # remote code: must not be kept")
        (target / "pytorch_model.bin").write_bytes(b"pickle")
        return commit
    return download


FILES = {"config.json": b'{"model_type": "lamed_phi3"}', "model.safetensors": b"\x00" * 100,
         "tokenizer.model": b"spm"}


def test_pull_writes_a_manifest_and_drops_code_and_pickles(home):
    rec = weights.pull("laynad/PETAR-4B", "v1", downloader=fake_downloader(FILES))
    assert rec.path == home / "models" / "laynad--PETAR-4B" / "abc123def456"
    names = sorted(p.name for p in rec.path.iterdir())
    assert names == ["config.json", "model.safetensors", "petar-manifest.json", "tokenizer.model"]
    man = json.loads((rec.path / "petar-manifest.json").read_text())
    assert man["revision"] == "v1" and man["commit"] == "abc123def456"
    assert set(man["files"]) == set(FILES)
    assert rec.to_dict()["revision"] == "abc123def456" and len(rec.to_dict()["sha256"]) == 64


def test_resolve_finds_cached_models_offline_by_revision_or_commit():
    weights.pull("laynad/PETAR-4B", "v1", downloader=fake_downloader(FILES))
    assert weights.resolve("laynad/PETAR-4B", "v1").commit == "abc123def456"
    assert weights.resolve("laynad/PETAR-4B", "abc123def456").revision == "v1"
    assert weights.resolve("laynad/PETAR-4B").commit == "abc123def456"


def test_absent_weights_raise_exit_3_with_the_exact_command():
    with pytest.raises(ModelMissingError) as err:
        weights.resolve("laynad/PETAR-4B", "v2")
    assert err.value.exit_code == 3
    assert "petar models pull laynad/PETAR-4B --revision v2" in str(err.value)


def test_verify_detects_a_changed_file():
    rec = weights.pull("laynad/PETAR-4B", "v1", downloader=fake_downloader(FILES))
    assert weights.verify("laynad/PETAR-4B", "v1") == []
    (rec.path / "model.safetensors").write_bytes(b"\x01" * 100)
    assert weights.verify("laynad/PETAR-4B", "v1") == ["model.safetensors: sha256 differs"]
    (rec.path / "tokenizer.model").unlink()
    assert "tokenizer.model: missing" in weights.verify(str(rec.path))


def test_failed_pull_leaves_no_partial_snapshot(home):
    def broken(model_id, revision, target):
        target.mkdir(parents=True)
        (target / "model.safetensors").write_bytes(b"half")
        raise ConnectionError("network down")

    with pytest.raises(ConnectionError):
        weights.pull("laynad/PETAR-4B", "v1", downloader=broken)
    repo = home / "models" / "laynad--PETAR-4B"
    assert not repo.exists() or not list(repo.iterdir())


def test_a_download_without_config_is_not_a_checkpoint():
    with pytest.raises(InputError, match="no config.json"):
        weights.pull("someone/not-a-model", None, downloader=fake_downloader({"README.md": b"hi"}))


def test_local_folder_is_used_as_is(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    rec = weights.resolve(str(tmp_path / "ckpt"))
    assert rec.path == tmp_path / "ckpt" and rec.manifest_sha256 is None
    with pytest.raises(ModelMissingError, match="does not exist"):
        weights.resolve(str(tmp_path / "nope"))


def test_list_shows_catalogue_and_cache():
    rows = weights.list_models()
    assert rows[0]["id"] == "laynad/PETAR-4B" and rows[0]["cached"] is False
    weights.pull("laynad/PETAR-4B", "v1", downloader=fake_downloader(FILES))
    rows = weights.list_models()
    assert rows[0]["cached"] is True and rows[0]["commit"] == "abc123def456"
