"""benchmarks/peers.py computes the same meta-gradient in every peer: learn2learn's
clone()/adapt(), higher's innerloop_ctx and TorchOpt's MetaSGD for maml and anil, TorchOpt's
custom_root with CG for imaml, each against this package's outer step from the same θ
(float64, relative L2 ≤ 1e-10), on a small Conv4 with BatchNorm and on the regression MLP."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peers  # noqa: E402

from helpers import random_episodes  # noqa: E402


def small_case():
    from bilevel_anil.models import Conv4

    torch.manual_seed(0)
    return Conv4(3, hidden=8, image_size=16), random_episodes(tasks=3, ways=3, shots=2, queries=2, shape=(1, 16, 16))


@pytest.mark.parametrize("peer", ["learn2learn", "higher", "torchopt"])
@pytest.mark.parametrize("algo, steps", [("maml", 2), ("anil", 3), ("imaml", 3)])
def test_peer_meta_gradient_equals_the_package(peer, algo, steps):
    diff = peers.agreement(small_case, peer, algo, steps, 0.1, regression=False)
    if algo == "imaml" and peer != "torchopt":
        assert diff is None  # no implicit gradient in learn2learn or higher
    else:
        assert diff is not None and diff <= 1e-10


@pytest.mark.parametrize("peer", ["learn2learn", "higher", "torchopt"])
def test_peer_meta_gradient_on_the_regression_mlp(peer):
    assert peers.agreement(lambda: peers.regression_case(tasks=4), peer, "maml", 2, 0.01, regression=True) <= 1e-10


def test_the_benchmark_writes_its_table(tmp_path, capsys):
    assert peers.main(["--repeats", "1", "--out", str(tmp_path)]) == 0  # the regression case, without Omniglot
    rows = (tmp_path / "peers.csv").read_text().splitlines()
    assert rows[0].startswith("case,algorithm,bilevel_anil_s,learn2learn_s") and len(rows) == 2
    assert peers.main(["--peers", "jax"]) == 2


def test_the_memory_pass_measures_each_peer_in_its_own_process(tmp_path):
    assert peers.main(["--repeats", "1", "--memory", "--out", str(tmp_path)]) == 0
    header, row = (tmp_path / "peers.csv").read_text().splitlines()
    columns = dict(zip(header.split(","), row.split(",")))
    for peer in ("bilevel_anil", "learn2learn", "higher", "torchopt"):
        assert float(columns[f"{peer}_peak_mib"]) >= 0  # a number from the child, not "error"
