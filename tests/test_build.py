"""The distribution: ``python -m build`` makes a wheel and an sdist; the wheel holds every module
of the package's layers (a subpackage without ``__init__.py`` would be left out), installs into
a clean venv and imports there (``import bilevel_anil`` needs no torch: its names load on first
use); the sdist holds the same modules."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "bilevel_anil").rglob("*.py"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the venv's setuptools and wheel (the test extra), no download
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)], check=True,
                   capture_output=True, text=True, cwd=out)
    return out


def test_the_wheel_holds_every_module_and_imports_in_a_clean_venv(dist, tmp_path):
    wheel, = dist.glob("bilevel_anil-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [m for m in MODULES if m not in names] == []
    assert not any(name.startswith("tests/") for name in names)
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True)
    done = subprocess.run([str(python), "-c", "import sys, bilevel_anil; print(bilevel_anil.__version__, "
                           "sorted(m for m in sys.modules if m.startswith(('torch', 'betty'))))"],
                          check=True, capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.split()[0] == __import__("bilevel_anil").__version__ and done.stdout.strip().endswith("[]")
    entry = env / "bin" / "bilevel-anil"
    assert entry.is_file()  # the console script, bilevel_anil.cli.console:console_main


def test_the_sdist_holds_every_module(dist):
    sdist, = dist.glob("bilevel_anil-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert [m for m in MODULES if m not in names] == []
