"""Model weights on disk: where they live, how they get there, and proof they are what was pulled.

Layout: `$PETAR_HOME/models/<owner>--<name>/<commit>/` holds the files and `petar-manifest.json` (model id, the
revision asked for, the commit it resolved to, sha256 and size of every file). `PETAR_HOME` defaults to
`~/.cache/petar` (or `$XDG_CACHE_HOME/petar`). Only weights, configs and tokenizer files are fetched — never
`*.py` (no remote code) and never pickled `*.bin`. Once files are present, nothing touches the network.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_json
from ..errors import InputError, ModelMissingError

MANIFEST = "petar-manifest.json"
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.tiktoken"]
IGNORE_PATTERNS = ["*.py", "*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]
CATALOGUE = {
    "laynad/PETAR-4B": "PETAR-4B: PET/CT lesion findings (lamed_phi3, Phi-3-mini + two 3D ViTs), fp32, ~16 GB",
}
DEFAULT_MODEL = "laynad/PETAR-4B"


def petar_home() -> Path:
    env = os.environ.get("PETAR_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base).expanduser() / "petar"


def _repo_dir(model_id: str) -> Path:
    if model_id.count("/") != 1 or any(c in model_id for c in " \\:"):
        raise InputError(f"{model_id!r} is neither a model folder nor a hub id like owner/name")
    return petar_home() / "models" / model_id.replace("/", "--")


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelRecord:
    """A model folder with what is known about its provenance."""

    path: Path
    model_id: str
    revision: str | None          # as asked for
    commit: str | None            # what it resolved to
    manifest_sha256: str | None   # digest of the manifest: pins every file's sha256

    def to_dict(self) -> dict:
        return {"id": self.model_id, "revision": self.commit or self.revision, "sha256": self.manifest_sha256}


def _read_manifest(folder: Path) -> dict | None:
    p = folder / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{p} is unreadable: run `petar models pull` again") from None


def write_manifest(folder: Path, model_id: str, revision: str | None, commit: str | None) -> Path:
    """Hash every file in `folder` and record it (atomic)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST and ".cache" not in p.relative_to(folder).parts:
            files[str(p.relative_to(folder))] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    write_json(folder / MANIFEST, {"id": model_id, "revision": revision, "commit": commit,
                                   "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files})
    return folder / MANIFEST


def record_for(folder: Path, model_id: str | None = None) -> ModelRecord:
    manifest = _read_manifest(folder)
    digest = sha256_file(folder / MANIFEST) if manifest else None
    if manifest:
        return ModelRecord(folder, manifest.get("id") or model_id or folder.name, manifest.get("revision"),
                           manifest.get("commit"), digest)
    return ModelRecord(folder, model_id or str(folder), None, None, None)


def _snapshots(model_id: str) -> list[Path]:
    root = _repo_dir(model_id)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / MANIFEST).exists()), key=lambda p: (p / MANIFEST).stat().st_mtime)


def pull_command(model_id: str, revision: str | None) -> str:
    return f"petar models pull {model_id} --revision {revision or 'REVISION'}"


def resolve(model: str | os.PathLike | None, revision: str | None = None) -> ModelRecord:
    """A local folder as is, or a hub id found in the cache (offline). Absent → ModelMissingError (exit 3)
    whose message is the exact command that fetches it."""
    model = model or DEFAULT_MODEL
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelMissingError(f"{path} has no config.json: give the folder that holds the checkpoint")
        return record_for(path)
    if str(model).startswith((".", "/", "~")) or os.sep in str(model).replace("/", "", 1):
        raise ModelMissingError(f"model folder {model} does not exist")
    candidates = _snapshots(str(model))
    for snap in reversed(candidates):
        man = _read_manifest(snap)
        if revision is None or revision in (man.get("revision"), man.get("commit")) or snap.name == revision:
            return record_for(snap, str(model))
    have = f" (cached here: {', '.join(p.name[:12] for p in candidates)})" if candidates else ""
    raise ModelMissingError(f"{model}{'@' + revision if revision else ''} is not on this machine{have}: run "
                            f"`{pull_command(str(model), revision)}`")


def _hub_download(model_id: str, revision: str | None, target: Path) -> str | None:
    """Fetch the allowed files into `target`; return the resolved commit (None when unknown)."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise ModelMissingError("huggingface_hub is not installed: pip install huggingface_hub (or copy the model "
                                "folder here and pass it with --model DIR)") from None
    commit = None
    try:
        commit = HfApi().model_info(model_id, revision=revision).sha
    except Exception:  # offline or gated: the download below reports the real error
        pass
    snapshot_download(model_id, revision=commit or revision, local_dir=str(target),
                      allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return commit


def pull(model_id: str, revision: str | None = None, downloader=None) -> ModelRecord:
    """Download `model_id` at `revision` into the cache and write its manifest. `downloader(model_id, revision,
    target) -> commit` is injectable (tests, mirrors); the default uses huggingface_hub."""
    root = _repo_dir(model_id)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        commit = (downloader or _hub_download)(model_id, revision, staging)
        for junk in ("*.py", "*.bin", "*.pkl"):
            for p in staging.rglob(junk):
                p.unlink()
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        if not (staging / "config.json").exists():
            raise InputError(f"{model_id}@{revision or 'main'} has no config.json: is it a PETAR checkpoint?")
        write_manifest(staging, model_id, revision, commit)
        final = root / (commit or revision or "main")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record_for(final, model_id)


def verify(model: str, revision: str | None = None) -> list[str]:
    """Re-hash every file against the manifest; return the problems (empty list = verified)."""
    rec = resolve(model, revision)
    manifest = _read_manifest(rec.path)
    if manifest is None:
        raise InputError(f"{rec.path} has no {MANIFEST} (it was not pulled by petar): nothing to verify against")
    problems = []
    for name, want in manifest["files"].items():
        p = rec.path / name
        if not p.exists():
            problems.append(f"{name}: missing")
        elif p.stat().st_size != want["size"]:
            problems.append(f"{name}: size {p.stat().st_size} != {want['size']}")
        elif sha256_file(p) != want["sha256"]:
            problems.append(f"{name}: sha256 differs")
    return problems


def list_models() -> list[dict]:
    """The catalogue and what is cached (id, commit, size, path)."""
    rows = []
    seen = set()
    models_dir = petar_home() / "models"
    for repo in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        model_id = repo.name.replace("--", "/", 1)
        for snap in _snapshots(model_id):
            man = _read_manifest(snap) or {}
            size = sum(f.get("size", 0) for f in man.get("files", {}).values())
            rows.append({"id": model_id, "revision": man.get("revision"), "commit": man.get("commit"),
                         "size_gb": round(size / 1e9, 3), "path": str(snap), "cached": True})
            seen.add(model_id)
    for model_id, about in CATALOGUE.items():
        if model_id not in seen:
            rows.append({"id": model_id, "revision": None, "commit": None, "size_gb": None, "path": None,
                         "cached": False, "about": about})
    return rows
