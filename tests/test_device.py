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
