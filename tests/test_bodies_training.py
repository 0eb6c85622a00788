"""Pretrained and frozen bodies end to end on the real Omniglot: a short S4 run from a
torchvision checkpoint, and a short ``run.py scenarios``."""
import csv
import json

import torch
import torchvision

import bilevel_anil
from bilevel_anil.cli import main

FAST = ["--ways", "5", "--shots", "1", "--meta-batch", "4", "--val-tasks", "10", "--test-tasks", "20",
        "--test-queries", "3", "--no-progress"]


def test_frozen_convolutions_in_a_short_s4_run(omniglot_root, tmp_path, capsys):
    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None).state_dict()  # RGB conv1, BN running statistics
    torch.save(state, tmp_path / "resnet18.pth")
    out = tmp_path / "s4"
    assert main(["--problem", "foanil", "--arch", "resnet18", "--pretrained", str(tmp_path / "resnet18.pth"),
                 "--train-body", "bn", "--data-root", str(omniglot_root), "--out", str(out), "--iterations", "3",
                 "--val-every", "3", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "parameters: 11,172,805 total, 12,165 meta-trained, 9,600 BatchNorm" in printed
    assert "conv1.weight from the sum of its RGB kernels" in printed
    report = json.loads((out / "results.json").read_text())
    assert report["parameters"] == {"total": 11_172_805, "meta_trained": 12_165, "batchnorm": 9_600}
    assert report["train_body"] == "bn" and report["peak_train_mib"] is not None
    trained = torch.load(out / "best.pt", weights_only=False)["model"]
    assert torch.equal(trained["body.conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(trained["body.layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    assert not torch.equal(trained["body.layer3.1.bn2.weight"], state["layer3.1.bn2.weight"])  # meta-trained
    model = bilevel_anil.load(out / "best.pt")  # the generic body rebuilds from the checkpoint
    logits = model.adapt_and_predict(torch.rand(5, 1, 28, 28), torch.arange(5), torch.rand(7, 1, 28, 28))
    assert logits.shape == (7, 5)


def test_scenarios_command_writes_its_report(omniglot_root, tmp_path, capsys):
    torch.manual_seed(4)
    body = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(body, tmp_path / "body.pt")
    out = tmp_path / "scenarios"
    assert main(["scenarios", "--data-root", str(omniglot_root), "--only", "S2,S4,S4-noBN", "--time-budget", "2",
                 "--pretrained", str(tmp_path / "body.pt"), "--meta-batch", "2", "--val-every", "5",
                 "--val-tasks", "5", "--test-tasks", "10", "--out", str(out), "--no-progress"]) == 0
    with open(out / "scenarios.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["scenario"] for r in rows] == ["S2", "S4", "S4-noBN"]
    assert [int(r["params_meta_trained"]) for r in rows] == [112_261, 12_165, 2_565]
    for r in rows:
        assert int(r["outer_steps"]) >= 1 and float(r["peak_mib"]) >= 0
        assert 0 <= float(r["test_after"]) <= 1 and float(r["test_after_ci95"]) > 0
    summary = json.loads((out / "scenarios.json").read_text())
    assert summary["pretrained"] == str(tmp_path / "body.pt") and len(summary["rows"]) == 3
    assert (out / "scenarios.png").stat().st_size > 10_000
    assert "| S4-noBN |" in (out / "scenarios.md").read_text()
    assert "| S4 | 11,172,805 | 12,165 | 9,600 |" in capsys.readouterr().out
