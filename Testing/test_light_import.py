"""`import petar` and the non-model commands run with torch, transformers, monai and scipy absent (as in Slicer)."""
import subprocess
import sys
import textwrap

from conftest import ball_volume
from petar import write_volume

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    HEAVY = {"torch", "transformers", "monai", "scipy", "timm", "torchvision", "nnunetv2", "pandas", "matplotlib",
             "krippendorff"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"blocked heavy import: {name}")
    sys.meta_path.insert(0, Block())
""")


def _run(code: str, tmp_path):
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)


def test_import_and_core_commands_need_no_heavy_packages(tmp_path):
    pet, mask = ball_volume(shape=(24, 30, 30), spacing=(3.0, 3.0, 3.0), radius_mm=8.0)
    write_volume(pet, tmp_path / "pet.nii.gz")
    write_volume(mask, tmp_path / "mask.nii.gz")
    write_volume(pet, tmp_path / "ct.nii.gz")
    r = _run("""
        import sys, petar
        from petar.cli import main
        assert main(["measure", "--pet", "pet.nii.gz", "--mask", "mask.nii.gz", "--json", "m.json"]) == 0
        assert main(["segment", "--pet", "pet.nii.gz", "--point", "0,0,0", "--method", "adaptive",
                     "--out", "s.nii.gz"]) == 0
        assert main(["report", "--pet", "pet.nii.gz", "--ct", "ct.nii.gz", "--mask", "mask.nii.gz"]) == 0
        ph = petar.make_phantom(seed=1, shape=(60, 32, 32), spacing=(8.0, 8.0, 8.0))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "transformers", "monai", "scipy"})
        assert not heavy, heavy
        print("LIGHT-OK")
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "LIGHT-OK" in r.stdout


def test_module_entry_point_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "petar", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("petar ")


def test_reader_studies_run_without_the_study_extra(tmp_path):
    """The Slicer reader panel uses petar.study: create, read, rate, export with no scipy/matplotlib/krippendorff;
    only `analyze` needs the extra, and says so with exit 3."""
    pet, mask = ball_volume(shape=(8, 8, 8), spacing=(3.0, 3.0, 3.0), radius_mm=4.0)
    write_volume(pet, tmp_path / "pet.nii.gz")
    write_volume(mask, tmp_path / "mask.nii.gz")
    (tmp_path / "m.json").write_text('{"cases": [{"case_id": "c1", "pet": "pet.nii.gz", "mask": "mask.nii.gz", '
                                     '"texts": {"reference": "Focal uptake, SUVmax 5.1", "petar": "FDG-avid node"}}]}')
    r = _run("""
        import sys
        from petar.cli import main
        from petar.study import Study
        assert main(["study", "create", "--manifest", "m.json", "--db", "s.sqlite", "--readers", "r1"]) == 0
        with Study.open("s.sqlite") as st:
            s = st.session("r1")
            g = {"anatomy": 4, "interpretation": 4, "utility": 4}
            s.rate(s.next_item(), {"A": g, "B": g}, preference="tie")
        assert main(["study", "export", "--db", "s.sqlite", "--out", "exp"]) == 0
        assert main(["study", "analyze", "--db", "s.sqlite", "--out", "an"]) == 3
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"scipy", "matplotlib", "krippendorff", "torch"})
        assert not heavy, heavy
        print("STUDY-LIGHT-OK")
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "STUDY-LIGHT-OK" in r.stdout and "pip install" in r.stderr and "[study]" in r.stderr
