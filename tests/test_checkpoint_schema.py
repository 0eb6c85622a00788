"""The checkpoint schema (``bilevel_anil.training.schema``): one writer and one reader per kind
of file, a format number, and the files of the release before it still read to the same
learner (the fixtures in ``tests/fixtures/format1``, made with that release: their README says
how, and ``expected.json`` holds what that release computed from them)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bilevel_anil import MetaLearner, load
from bilevel_anil.cli import main
from bilevel_anil.models import image_model
from bilevel_anil.training import checkpoint, schema
from bilevel_anil.training.pretrained import load_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "format1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
PACKAGE = Path(__file__).resolve().parents[1] / "bilevel_anil"


def _sine_points():
    x = torch.linspace(-3, 3, 10).unsqueeze(1)
    return x, torch.sin(x)


def test_a_format1_run_checkpoint_loads_to_the_same_learner():
    """run.py's last.pt of the release before: the learner, its step and its adaptation's
    predictions are those that release computed (float32, to 1e-6)."""
    saved = schema.read_run(FIXTURES / "run-last-format1.pt", resume=True)
    assert saved.learner.algorithm == "anil" and saved.run["config"]["dataset"] == "sine" and saved.resumable
    learner = MetaLearner.load(FIXTURES / "run-last-format1.pt")
    want = EXPECTED["run"]
    assert (learner.algorithm.name, learner.steps_taken, learner.inner_lr) == \
        (want["algorithm"], want["step"], want["inner_lr"])
    x, y = _sine_points()
    got = learner.adapt(x[:5], y[:5], steps=2)(x[5:]).flatten()
    torch.testing.assert_close(got, torch.tensor(want["prediction"]), rtol=1e-6, atol=1e-6)


def test_a_format1_save_file_loads_to_the_same_learner():
    """MetaLearner.save's file of the release before (imaml, λ = 2, CG with 4 iterations)."""
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    learner = MetaLearner.load(FIXTURES / "save-format1.pt", model=net)
    want = EXPECTED["save"]
    assert (learner.algorithm.name, learner.steps_taken, learner.learner.lam, learner.test_learner.lam) == \
        (want["algorithm"], want["step"], want["lam"], want["test_lam"])
    assert [learner.hypergrad.method, learner.hypergrad.iterations] == want["hypergrad"]
    x, y = _sine_points()
    got = learner.adapt(x[:5], y[:5], steps=3)(x[5:]).flatten()
    torch.testing.assert_close(got, torch.tensor(want["prediction"]), rtol=1e-6, atol=1e-6)


def test_a_format1_body_file_gives_the_same_body():
    body = schema.read_body(FIXTURES / "body-format1.pt")
    assert body.arch["name"] == "conv4" and body.rule and body.centre.shape == (32,)
    model = image_model("conv4-32", 5, in_channels=1, image_size=28)
    load_pretrained(model, str(FIXTURES / "body-format1.pt"))
    model.eval()
    with torch.no_grad():
        features = model.body(torch.linspace(0, 1, 2 * 28 * 28).reshape(2, 1, 28, 28))
    assert list(features.shape) == EXPECTED["body"]["features_shape"]
    assert features.sum().item() == pytest.approx(EXPECTED["body"]["features_sum"], rel=1e-5)


def test_files_are_written_in_the_current_format_and_read_back(tmp_path):
    """Each writer writes format 2 with its kind; each reader gives back the record written."""
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    learner = MetaLearner(net, "imaml", loss="mse", lam=3.0, hypergrad="neumann", hypergrad_iterations=6)
    learner.save(tmp_path / "learner.pt")
    raw = checkpoint.read(tmp_path / "learner.pt")
    assert (raw["format"], raw["kind"]) == (schema.FORMAT, schema.RUN_KIND) and isinstance(raw["learner"], dict)
    record = schema.read_run(tmp_path / "learner.pt").learner
    assert record == learner.record()
    assert (record.lam, record.hypergrad["method"], record.hypergrad["iterations"]) == (3.0, "neumann", 6)
    twin = MetaLearner.load(tmp_path / "learner.pt", model=nn.Sequential(nn.Linear(1, 8), nn.Tanh(),
                                                                         nn.Linear(8, 1)))
    assert twin.record() == record


def test_a_run_folder_resumes_from_a_format1_last_pt(tmp_path, capsys):
    """run.py --resume continues a run whose last.pt was written by the release before."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((FIXTURES / "run-last-format1.pt").read_bytes())
    (out / "best.pt").write_bytes((FIXTURES / "run-last-format1.pt").read_bytes())
    (out / "metrics.csv").write_text("step,train_loss,train_score,val_score,val_ci95,elapsed_s,train_s,steps_per_s\n"
                                     "1,1.0,1.0,,,0.1,0.1,10\n2,1.0,1.0,1.0,0.1,0.2,0.2,10\n")
    code = main(["--problem", "anil", "--dataset", "sine", "--iterations", "3", "--val-every", "1", "--val-tasks", "4",
                 "--test-tasks", "4", "--meta-batch", "2", "--no-progress", "--out", str(out), "--resume"])
    assert code == 0, capsys.readouterr().err
    assert schema.read_run(out / "last.pt").step == 3
    assert checkpoint.read(out / "last.pt")["format"] == schema.FORMAT


@pytest.mark.parametrize("change, fragment", [
    (lambda s: s.pop("learner"), "learner"),
    (lambda s: s["learner"].__setitem__("inner_lr", "fast"), "learner.inner_lr"),
    (lambda s: s.__setitem__("step", 1.5), "'step'"),
    (lambda s: s.__setitem__("kind", "other"), "is not a run checkpoint"),
    (lambda s: s.__setitem__("format", 3), "is not a bilevel_anil checkpoint"),
])
def test_a_damaged_checkpoint_is_one_line(tmp_path, change, fragment):
    MetaLearner(nn.Sequential(nn.Linear(1, 2)), "maml", loss="mse").save(tmp_path / "a.pt")
    state = checkpoint.read(tmp_path / "a.pt")
    change(state)
    torch.save(state, tmp_path / "b.pt")
    with pytest.raises(ValueError, match=fragment):
        load(tmp_path / "b.pt")


def test_one_writer_and_one_reader():
    """Only the schema calls checkpoint.save and checkpoint.read on the package's files (the
    safe loader is also used for other libraries' weights: none of the package's readers
    bypass the schema)."""
    callers = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id == "checkpoint" and node.attr in ("save", "read"):
                callers.setdefault(node.attr, set()).add(path.relative_to(PACKAGE).as_posix())
    assert callers == {"save": {"training/schema.py"}, "read": {"training/schema.py"}}, callers


def test_a_damaged_body_file_is_named_as_one(tmp_path):
    state = checkpoint.read(FIXTURES / "body-format1.pt")
    state["rule"] = 3
    torch.save(state, tmp_path / "body.pt")
    with pytest.raises(ValueError, match=r"is not a complete pretrain-body file \('rule'.*run.py pretrain-body"):
        schema.read_body(tmp_path / "body.pt")
