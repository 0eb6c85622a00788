"""Reported intervals: mean, 95% half-width, median and diverged-task count."""
import math

import torch

from bilevel_anil.core.evaluation import Interval


def test_interval_against_direct_formulas():
    values = torch.tensor([0.2, 0.4, 0.9, 0.5])
    got = Interval.of(values)
    mean = sum(values.tolist()) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values.tolist()) / 3)
    assert math.isclose(got.mean, mean, rel_tol=1e-12)
    assert math.isclose(got.ci95, 1.96 * sd / 2, rel_tol=1e-6)
    assert got.tasks == 4 and got.nonfinite == 0 and math.isclose(got.median, 0.4, rel_tol=1e-6)


def test_diverged_tasks_are_counted_not_hidden():
    got = Interval.of(torch.tensor([0.1, float("inf"), 0.3, float("nan")]))
    assert got.nonfinite == 2 and not math.isfinite(got.mean)
