"""Shared fixtures: small analytic volumes and a small phantom, built in memory (no downloads, no weights)."""
from __future__ import annotations

import io

from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

import petar
from petar.volume import Volume


def ball_volume(shape=(40, 48, 56), spacing=(2.0, 2.0, 3.0), center_mm=(0.0, 0.0, 0.0), radius_mm=10.0,
                inside=8.0, outside=1.0, origin=None):
    """Uniform ball of SUV `inside` on a uniform background; returns (pet, mask) with identity direction.

    The grid is centred on LPS (0, 0, 0) unless `origin` is given.
    """
    nz, ny, nx = shape
    sx, sy, sz = spacing
    if origin is None:
        origin = (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz)
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    x, y, z = origin[0] + xx * sx, origin[1] + yy * sy, origin[2] + zz * sz
    d2 = (x - center_mm[0]) ** 2 + (y - center_mm[1]) ** 2 + (z - center_mm[2]) ** 2
    inside_mask = d2 <= radius_mm ** 2
    pet = Volume(np.where(inside_mask, inside, outside).astype(np.float32), spacing, origin)
    return pet, Volume.from_array(inside_mask.astype(np.uint8), like=pet)


@pytest.fixture
def ball():
    return ball_volume()


@pytest.fixture(scope="session")
def small_phantom():
    """A whole body in miniature (fast): 120 × 64 × 64 voxels of 5 mm."""
    return petar.make_phantom(seed=3, shape=(120, 64, 64), spacing=(5.0, 5.0, 5.0))


@pytest.fixture(scope="session")
def phantom_files(small_phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    small_phantom.write(out)
    return out


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli():
    """Run `petar ...` in-process; returns exit code, stdout, stderr."""
    from petar.cli import main

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse usage errors and --help
                code = exc.code if isinstance(exc.code, int) else 1
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def assert_one_line_error(result, *fragments):
    """Exit 2, stderr is exactly one line starting with 'error:' and naming what is wrong."""
    assert result.code == 2, (result.code, result.err)
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])


