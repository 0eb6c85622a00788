"""The installation on the running Python: learn2learn's compiled modules (built from its sdist
with regenerated C on 3.11+, scripts/make_venv.sh) import and build episodes, betty-ml imports
despite its declared Requires-Python, and torch/torchvision are the versions setup.cfg pins for
this Python."""
import configparser
import importlib.machinery
import importlib.metadata as md
import sys
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["meta_dataset", "task_dataset", "transforms"])
def test_learn2learn_compiled_modules_are_built_for_this_python(module):
    imported = __import__(f"learn2learn.data.{module}", fromlist=["_"])
    path = Path(imported.__file__)
    assert path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path  # compiled, not a .py
    assert f"cpython-{sys.version_info.major}{sys.version_info.minor}" in path.name, path


def test_learn2learn_builds_episodes_on_this_python():
    import learn2learn as l2l

    x = torch.arange(40, dtype=torch.float32).view(20, 2)
    y = torch.arange(5).repeat_interleave(4)  # 5 classes of 4 examples
    meta = l2l.data.MetaDataset(torch.utils.data.TensorDataset(x, y))
    tasks = l2l.data.TaskDataset(meta, [l2l.data.transforms.NWays(meta, 3), l2l.data.transforms.KShots(meta, 2),
                                        l2l.data.transforms.LoadData(meta),
                                        l2l.data.transforms.RemapLabels(meta)], num_tasks=4)
    for i in range(4):
        data, labels = tasks[i]
        assert data.shape == (6, 2) and sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
        original = {int(v) // 4 for v in data[:, 0] // 2}  # row k holds 2k, 2k+1: class k // 4
        assert len(original) == 3


def test_betty_imports_and_declares_its_old_python_cap():
    import betty  # noqa: F401
    from betty.engine import Engine  # noqa: F401

    declared = md.metadata("betty-ml")["Requires-Python"]
    assert declared and "<3.11" in declared.replace(" ", "")  # installed anyway: docs/getting-started.md, Supported Pythons


def _pins() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    pins = {}
    for line in cfg["options"]["install_requires"].strip().splitlines():
        req = Requirement(line.strip())
        if req.marker is None or req.marker.evaluate():
            pins[req.name] = req.specifier
    return pins


@pytest.mark.parametrize("name", ["torch", "torchvision", "learn2learn", "betty-ml"])
def test_installed_versions_are_setup_cfg_pins_for_this_python(name):
    pins = _pins()
    assert name in pins
    installed = md.version(name).split("+")[0]
    assert pins[name].contains(installed), f"{name} {installed} installed, setup.cfg pins {pins[name]}"


def test_console_command_is_installed_and_is_run_py():
    """``pip install`` puts ``bilevel-anil`` beside the interpreter; it is run.py's command line."""
    import subprocess
    import sys
    from pathlib import Path

    command = Path(sys.executable).parent / "bilevel-anil"
    assert command.is_file(), f"{command} is missing: reinstall the package (make venv)"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--dataset" in done.stdout and "folder" in done.stdout
    bad = subprocess.run([str(command), "--ways", "x"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
