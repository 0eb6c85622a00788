"""Loading a file never runs code from it: a crafted pickle whose ``__reduce__`` calls
``os.system`` is refused with one line, through every path that reads a checkpoint or weights
file (``bilevel_anil.load``, ``--resume``, ``--pretrained`` of ``run.py`` and ``scenarios``);
the package's own files (old and new format) still load."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import bilevel_anil
from bilevel_anil.training import checkpoint, schema
from bilevel_anil.cli import main
from bilevel_anil.errors import UsageError


class _Payload:
    """Pickles as a call of ``os.system``: what a crafted checkpoint carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted(path: Path, marker: Path, **extra) -> Path:
    torch.save({"format": schema.FORMAT, "model": {"w": torch.zeros(2)}, "payload": _Payload(marker), **extra},
               path)
    return path


def test_the_payload_does_run_under_a_plain_unpickler(tmp_path):
    """The test's own check: without weights_only the crafted file does create the marker."""
    marker = tmp_path / "ran"
    torch.load(crafted(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def _one_line(capsys, code):
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_load_refuses_a_crafted_checkpoint(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="was refused") as info:
        bilevel_anil.load(crafted(tmp_path / "best.pt", marker))
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_resume_refuses_a_crafted_last_pt(tmp_path, capsys):
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    out.mkdir()
    crafted(out / "last.pt", marker)
    code = main(["--problem", "maml", "--dataset", "sine", "--iterations", "2", "--out", str(out), "--resume",
                 "--no-progress"])
    assert "was refused" in _one_line(capsys, code)
    assert not marker.exists()


@pytest.mark.parametrize("command", [[], ["scenarios", "--only", "S3"]])
def test_pretrained_refuses_a_crafted_file(tmp_path, capsys, omniglot_root, command):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "weights.pt", marker)
    code = main([*command, "--pretrained", str(path), "--data-root", str(omniglot_root), "--out", str(tmp_path / "o"),
                 *([] if command else ["--iterations", "1"])])
    assert "was refused" in _one_line(capsys, code)
    assert not marker.exists()


def test_checkpoint_read_refuses_any_global_but_plain_arrays(tmp_path):
    """numpy arrays (the random state of earlier files) load; an object array's payload does not run."""
    marker = tmp_path / "ran"
    plain = tmp_path / "plain.pt"
    torch.save({"format": 1, "keys": np.arange(5, dtype=np.uint32)}, plain)
    assert checkpoint.read(plain)["keys"].tolist() == [0, 1, 2, 3, 4]
    objects = tmp_path / "objects.pt"
    array = np.empty(1, dtype=object)
    array[0] = _Payload(marker)
    torch.save({"format": 1, "keys": array}, objects)
    with pytest.raises(UsageError, match="was refused"):
        checkpoint.read(objects)
    assert not marker.exists()


def test_a_runs_own_checkpoint_is_accepted_by_pretrained(tmp_path, capsys, omniglot_root):
    """--pretrained takes a run's best.pt (the docs say so); before, its numpy random state
    made the safe loader refuse it."""
    common = ["--data-root", str(omniglot_root), "--ways", "3", "--meta-batch", "2", "--val-tasks", "2",
              "--test-tasks", "2", "--no-progress"]
    first = tmp_path / "first"
    assert main([*common, "--iterations", "1", "--out", str(first)]) == 0
    capsys.readouterr()
    assert main([*common, "--iterations", "1", "--pretrained", str(first / "best.pt"),
                 "--out", str(tmp_path / "second")]) == 0
    assert f"weights from {first / 'best.pt'}" in capsys.readouterr().out
    code = main([*common, "--iterations", "1", "--arch", "resnet18", "--pretrained", str(first / "best.pt"),
                 "--out", str(tmp_path / "third")])
    assert "holds a conv4 checkpoint, not resnet18" in _one_line(capsys, code)  # the true reason, not "cannot be read"


def test_old_checkpoints_with_a_numpy_random_state_still_resume(tmp_path, capsys):
    """Files of earlier versions hold ``np.random.get_state()`` as an ndarray: resumable, same steps."""
    args = ["--problem", "maml", "--dataset", "sine", "--val-every", "2", "--val-tasks", "2", "--test-tasks", "2",
            "--no-progress", "--seed", "1"]
    new = tmp_path / "new"
    assert main([*args, "--iterations", "2", "--out", str(new)]) == 0
    old = tmp_path / "old"
    old.mkdir()
    state = checkpoint.read(new / "last.pt")
    name, keys, pos, has_gauss, cached = state["rng"]["numpy"]
    assert isinstance(keys, torch.Tensor)  # new files: tensors and plain values only
    state["rng"]["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    torch.save(state, old / "last.pt")
    for name in ("best.pt", "metrics.csv"):
        (old / name).write_bytes((new / name).read_bytes())
    for out in (new, old):
        assert main([*args, "--iterations", "4", "--out", str(out), "--resume"]) == 0
    capsys.readouterr()
    a, b = schema.read_run(new / "last.pt"), schema.read_run(old / "last.pt")
    for key, value in a.model.items():
        assert torch.equal(value, b.model[key]), key
