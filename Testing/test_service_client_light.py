"""The service client runs with only the standard library, numpy and SimpleITK (Slicer's Python): FastAPI, uvicorn,
starlette, pydantic, torch, transformers, httpx and requests blocked in the client process; a real server outside."""
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from petar.service.server import ServerThread, create_app  # noqa: E402

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    HEAVY = {"torch", "transformers", "monai", "scipy", "fastapi", "uvicorn", "starlette", "pydantic", "anyio",
             "httpx", "requests", "urllib3"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"blocked import: {name}")
    sys.meta_path.insert(0, Block())
""")


def test_client_needs_only_stdlib_numpy_simpleitk(tmp_path):
    with ServerThread(create_app(token="light-token")) as srv:
        code = BLOCKER + textwrap.dedent(f"""
            import sys, numpy as np, petar
            from petar.service import Client
            ph = petar.make_phantom(seed=1, shape=(60, 32, 32), spacing=(8.0, 8.0, 8.0))
            c = Client({srv.url!r}, token="light-token")
            assert c.health()["status"] == "ok" and c.info()["petar"] == petar.__version__
            doc = c.measure(ph.pet, ph.lesions, label=1)
            assert doc["lesions"][0]["label"] == 1
            t = ph.truth[0]
            mask, seg = c.segment(ph.pet, t["center_ras"], method="fixed", threshold=1.5)
            assert int(mask.array.sum()) == seg["lesion"]["voxels"] > 0
            assert c.report(ph.pet, ph.ct, ph.lesions, label=1)["findings"][0]["label"] == 1
            res, m = c.ground(f"SUVmax {{t['suv_max']:.1f}}, image {{t['axial_slice']}}", ph.pet)
            assert res["status"] in ("found", "ambiguous", "not_found")
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "fastapi", "uvicorn",
                           "starlette", "pydantic", "transformers", "httpx", "requests"}})
            assert not heavy, heavy
            print("CLIENT-LIGHT-OK")
        """)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "CLIENT-LIGHT-OK" in r.stdout
