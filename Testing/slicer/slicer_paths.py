"""Make the module Lib packages importable (as Slicer does with module folders); imported first by the tests.

Not a conftest.py: Testing/conftest.py is imported as the top-level module `conftest`, and a second one would
shadow it.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (Path(__file__).resolve().parent, ROOT / "PETARReport", ROOT / "PETARGrounding",
          ROOT / "PETARStudy"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
