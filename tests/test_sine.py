"""Sine-wave regression: the task family, and a brief run through the command line."""
import csv
import json
import math

import pytest
import torch

import bilevel_anil
from bilevel_anil.cli import main
from bilevel_anil.core.tasks import fixed_tasks
from bilevel_anil.data.sine import SineTasks, sine


def test_tasks_follow_the_maml_paper_family():
    torch.manual_seed(0)
    batch, amplitude, phase = SineTasks(shots=5, queries=7).sample_with_truth(2000)
    assert batch.support.x.shape == (2000, 5, 1) and batch.query.x.shape == (2000, 7, 1)
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
    assert 0.0 <= phase.min() and phase.max() <= math.pi
    xs = torch.cat([batch.support.x.flatten(), batch.query.x.flatten()])
    assert -5 <= xs.min() and xs.max() <= 5
    assert abs(amplitude.mean().item() - 2.55) < 0.1 and abs(xs.mean().item()) < 0.1  # uniform means
    torch.testing.assert_close(batch.query.y, sine(batch.query.x, amplitude, phase))
    torch.testing.assert_close(batch.support.y, amplitude * torch.sin(batch.support.x - phase))


def test_fixed_tasks_are_reproducible_and_seed_dependent():
    a = fixed_tasks(SineTasks(5, 10), 30, seed=3)
    b = fixed_tasks(SineTasks(5, 10), 30, seed=3)
    c = fixed_tasks(SineTasks(5, 10), 30, seed=4)
    assert torch.equal(a.support.y, b.support.y) and not torch.equal(a.support.y, c.support.y)


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sine") / "maml"
    code = main(["--problem", "maml", "--dataset", "sine", "--iterations", "400", "--val-every", "200",
                 "--val-tasks", "50", "--test-tasks", "100", "--out", str(out), "--no-progress"])
    assert code == 0
    return out, json.loads((out / "results.json").read_text())


def test_sine_run_reports_mse_at_k5_and_k10_after_0_1_5_10_steps(sine_run):
    out, report = sine_run
    assert report["metric"] == "mse" and report["bn_mode"] == "none"
    assert set(report["test"]) == {"K=5", "K=10"}
    for by_steps in report["test"].values():
        assert list(by_steps) == ["0", "1", "5", "10"]
        assert all(v["tasks"] == 100 and v["ci95"] > 0 for v in by_steps.values())
    k10 = report["test"]["K=10"]
    assert k10["10"]["mean"] < k10["0"]["mean"]  # adaptation helps
    assert k10["0"]["mean"] < 4.2  # below predicting 0 (MSE E[A^2]/2 = 4.25) after meta-training
    assert (out / "sine_tasks.png").stat().st_size > 10_000


def test_sine_checkpoint_loads_for_regression(sine_run):
    out, _ = sine_run
    model = bilevel_anil.load(out / "best.pt")
    x = torch.linspace(-5, 5, 10).view(-1, 1)
    y = 2.0 * torch.sin(x - 1.0)
    pred = model.adapt_and_predict(x, y, x, steps=10)
    assert pred.shape == (10, 1)
    before = model.adapt_and_predict(x, y, x, steps=0)
    assert (pred - y).pow(2).mean() < (before - y).pow(2).mean()


@pytest.mark.parametrize("grad", ["implicit", "unrolled"])
def test_imaml_trains_on_sine_with_either_meta_gradient(tmp_path, grad):
    out = tmp_path / grad
    code = main(["--problem", "imaml", "--grad", grad, "--dataset", "sine", "--iterations", "150",
                 "--val-every", "150", "--val-tasks", "20", "--test-tasks", "50", "--inner-lr", "0.05",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert report["algorithm"] == "imaml" and report["grad"] == grad
    assert report["config"]["inner_steps"] == 5 and report["config"]["lam"] == 10.0  # imaml's sine default
    assert all(math.isfinite(v["mean"]) for by_steps in report["test"].values() for v in by_steps.values())
    with open(out / "metrics.csv") as fh:
        losses = [float(row["train_loss"]) for row in csv.DictReader(fh)]
    assert sum(losses[-40:]) < sum(losses[:40])  # the query loss after adaptation goes down
    model = bilevel_anil.load(out / "best.pt")
    assert model.learner.lam == 10.0  # test-time adaptation uses the proximal objective too


def test_divergence_stops_with_one_line_and_keeps_checkpoints(tmp_path, capsys):
    out = tmp_path / "diverges"
    code = main(["--problem", "maml", "--dataset", "sine", "--meta-lr", "1e30",
                 "--iterations", "50", "--val-every", "1", "--val-tasks", "5", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "meta-training diverged at step" in err[0] and "lower --inner-lr or --meta-lr" in err[0]
    assert (out / "last.pt").is_file() and bilevel_anil.load(out / "last.pt").learner.loss.name == "mse"


def test_pretrain_baseline_trains_without_adaptation_and_fine_tunes_at_test(tmp_path, capsys):
    out = tmp_path / "pretrain"
    code = main(["--problem", "pretrain", "--dataset", "sine", "--iterations", "300", "--val-every", "300",
                 "--val-tasks", "20", "--test-tasks", "100", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "no adaptation in meta-training" in capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    assert report["algorithm"] == "pretrain" and list(report["test"]["K=10"]) == ["0", "1", "5", "10"]
    with open(out / "metrics.csv") as fh:
        losses = [float(row["train_loss"]) for row in csv.DictReader(fh)]
    assert sum(losses[-50:]) < sum(losses[:50])  # the loss at θ itself goes down
    assert report["test"]["K=10"]["0"]["mean"] < 4.2  # better than predicting 0 (MSE E[A^2]/2 = 4.25)
