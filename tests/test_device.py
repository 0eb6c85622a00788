"""``--device cuda`` end to end where CUDA is present; without it, the one-line refusal."""
import json

import torch

import bilevel_anil
from bilevel_anil.cli import main

RUN = ["--problem", "maml", "--dataset", "sine", "--iterations", "3", "--val-every", "3", "--val-tasks", "5",
       "--test-tasks", "5", "--no-progress", "--device", "cuda"]


def test_device_cuda_end_to_end(tmp_path, capsys):
    code = main([*RUN, "--out", str(tmp_path / "run")])
    if not torch.cuda.is_available():
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert "--device cuda was asked for but no CUDA device is available: use --device cpu" in err[0]
        return
    assert code == 0
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert report["config"]["device"] == "cuda" and report["steps_done"] == 3
    model = bilevel_anil.load(tmp_path / "run" / "best.pt")  # a CUDA checkpoint loads on the CPU
    assert next(model.model.parameters()).device.type == "cpu"


def test_the_api_on_cuda_computes_the_cpu_meta_gradient():
    """On a GPU: MetaLearner on cuda gives the CPU's meta-gradient (float64, ≤ 1e-10); without
    one: device='cuda' is one line at construction."""
    import pytest
    from torch import nn

    from bilevel_anil import MetaLearner, TaskBatch

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda was asked for but no CUDA device is available"):
            MetaLearner(net(), "maml", device="cuda")
        return
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(4, 2)
    batch = TaskBatch.of(torch.randn(4, 6, 4, generator=g, dtype=torch.float64), labels,
                         torch.randn(4, 6, 4, generator=g, dtype=torch.float64), labels)
    cpu = MetaLearner(net(), "maml", inner_lr=0.1, inner_steps=2).meta_gradient(batch)
    gpu = MetaLearner(net(), "maml", inner_lr=0.1, inner_steps=2, device="cuda").meta_gradient(batch)
    for name, g_cpu in cpu.items():
        assert torch.allclose(gpu[name].cpu(), g_cpu, rtol=1e-10, atol=1e-12)
