"""Brief meta-training on the real Omniglot: learning, outputs, reproducibility, resume, load()."""
import csv
import json

import pytest
import torch
from PIL import Image

import bilevel_anil
from bilevel_anil.cli import main
from bilevel_anil.data import omniglot as og

FAST = ["--ways", "5", "--shots", "1", "--meta-batch", "8", "--val-tasks", "20", "--test-tasks", "60",
        "--test-queries", "5", "--no-progress"]


def train(root, out, *extra):
    assert main(["--problem", "anil", "--data-root", str(root), "--out", str(out), *FAST, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def losses(out):
    with open(out / "metrics.csv") as fh:
        return [(row["step"], row["train_loss"], row["val_score"]) for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def trained(omniglot_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "anil"
    report = train(omniglot_root, out, "--iterations", "80", "--val-every", "40", "--meta-batch", "16")
    return out, report


def test_accuracy_rises_clearly_above_chance(trained):
    out, report = trained
    chance = 1 / 5
    before, after = report["test"]["5-way 1-shot"]["0"], report["test"]["5-way 1-shot"]["1"]
    assert after["mean"] > chance + 0.3
    assert abs(before["mean"] - chance) < 0.1  # labels are permuted per task
    assert after["tasks"] == 60
    assert 0 < after["ci95"] < 0.1
    assert report["bn_mode"] == "batch" and report["metric"] == "accuracy"


def test_run_folder_holds_metrics_and_checkpoints(trained):
    out, report = trained
    rows = losses(out)
    assert [r[0] for r in rows] == [str(i) for i in range(1, 81)]
    assert [r[2] != "" for r in rows].count(True) == 2
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert float(rows[-1][1]) < float(rows[0][1])


def test_load_adapt_and_predict_on_pil_images(trained, omniglot_root):
    out, _ = trained
    model = bilevel_anil.load(out / "best.pt")
    first_alphabet = sorted((omniglot_root / og.FOLDER / "images_evaluation").iterdir())[0]
    chars = sorted(first_alphabet.iterdir())[:5]
    files = [sorted(c.glob("*.png")) for c in chars]
    with Image.open(files[0][0]) as im:
        x = model.transform(im)
    assert x.shape == (1, 28, 28)
    cached = og.load_split(og.locate(omniglot_root, False), "evaluation")
    assert torch.equal(x, cached.images[cached.classes.index(f"{first_alphabet.name}/{chars[0].name}") * 20])

    def load(paths):
        out = []
        for p in paths:
            with Image.open(p) as im:
                out.append(model.transform(im))
        return torch.stack(out)

    support_x = load([f[0] for f in files])
    support_y = torch.arange(5)
    query_x = load([p for f in files for p in f[1:9]])
    query_y = torch.arange(5).repeat_interleave(8)
    logits = model.adapt_and_predict(support_x, support_y, query_x)
    assert logits.shape == (40, 5)
    assert (logits.argmax(1) == query_y).float().mean() > 0.4
    with pytest.raises(bilevel_anil.errors.UsageError, match="support labels must be integers 0..4"):
        model.adapt_and_predict(support_x, torch.tensor([0, 1, 2, 3, 7]), query_x)


def test_seeded_runs_are_identical(omniglot_root, tmp_path):
    train(omniglot_root, tmp_path / "a", "--iterations", "3", "--val-every", "3", "--seed", "5")
    train(omniglot_root, tmp_path / "b", "--iterations", "3", "--val-every", "3", "--seed", "5")
    train(omniglot_root, tmp_path / "c", "--iterations", "3", "--val-every", "3", "--seed", "6")
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_resume_continues_exactly(omniglot_root, tmp_path, capsys):
    whole = tmp_path / "whole"
    train(omniglot_root, whole, "--iterations", "4", "--val-every", "2")
    part = tmp_path / "part"
    train(omniglot_root, part, "--iterations", "2", "--val-every", "2")
    code = main(["--problem", "anil", "--data-root", str(omniglot_root), "--out", str(part), *FAST,
                 "--iterations", "4", "--val-every", "2"])
    assert code == 2 and "already holds a run" in capsys.readouterr().err
    train(omniglot_root, part, "--iterations", "4", "--val-every", "2", "--resume")
    assert losses(part) == losses(whole)


def test_running_batch_norm_mode_is_reported_and_not_transductive(omniglot_root, tmp_path, capsys):
    out = tmp_path / "running"
    report = train(omniglot_root, out, "--iterations", "6", "--val-every", "3", "--bn", "running")
    assert report["bn_mode"] == "running"
    assert "running statistics accumulated during meta-training" in capsys.readouterr().out
    model = bilevel_anil.load(out / "best.pt")
    assert model.bn_mode == "running"
    assert not torch.equal(model.model.body[0].bn.running_mean, torch.zeros(64))
    torch.manual_seed(0)
    sx, qx = torch.rand(5, 1, 28, 28), torch.rand(10, 1, 28, 28)
    both = model.adapt_and_predict(sx, torch.arange(5), qx)
    first_half = model.adapt_and_predict(sx, torch.arange(5), qx[:5])
    torch.testing.assert_close(both[:5], first_half)  # a query's prediction ignores the other queries


def test_batch_norm_mode_is_transductive(trained):
    """The default mode normalises the query set with its own statistics (the contrast to the above)."""
    model = bilevel_anil.load(trained[0] / "best.pt")
    assert model.bn_mode == "batch"
    torch.manual_seed(0)
    sx, qx = torch.rand(5, 1, 28, 28), torch.rand(10, 1, 28, 28)
    both = model.adapt_and_predict(sx, torch.arange(5), qx)
    first_half = model.adapt_and_predict(sx, torch.arange(5), qx[:5])
    assert not torch.allclose(both[:5], first_half, atol=1e-4)


def test_train_step_outside_run_raises_on_divergence():
    """An implicit run went NaN silently when stepped by hand; now train_step says so."""
    import torch

    from bilevel_anil.core.options import get_algorithm
    from bilevel_anil.engines import step_engine
    from bilevel_anil.core.tasks import RepeatBatch
    from bilevel_anil.errors import TrainingDiverged
    from bilevel_anil.core.learner import Learner
    from bilevel_anil.models import MLP

    torch.manual_seed(0)
    x = torch.randn(2, 5, 1)
    batch_y = torch.full((2, 5, 1), 1e30)  # targets whose squared error overflows float32
    from bilevel_anil.core.tasks import TaskBatch, TaskSet
    batch = TaskBatch(TaskSet(x, batch_y), TaskSet(x, batch_y))
    learner = Learner(MLP(), get_algorithm("maml"), "mse")
    engine = step_engine(learner, RepeatBatch(batch), 2, 1, 0.01, torch.optim.Adam(learner.model.parameters()))
    with pytest.raises(TrainingDiverged, match="diverged at outer step 1"):
        engine.train_step()
