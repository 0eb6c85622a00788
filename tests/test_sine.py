"""Sine-wave regression: the task family, and a brief run through the command line."""
import json
import math

import pytest
import torch

import bilevel_anil
from bilevel_anil.cli import main
from bilevel_anil.data.episodes import fixed_tasks
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
    assert k10["0"]["mean"] < 4.2  # below the variance of the targets (E[A^2]/2 = 4.17) after meta-training
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
