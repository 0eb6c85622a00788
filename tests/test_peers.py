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


def test_plain_betty_imaml_is_its_darts_approximation():
    """Plain Betty's iMAML (its example's two ImplicitProblems, default ``darts``) is wired as
    the example runs: its meta-gradient is exactly what DARTS gives for the proximal inner
    loss, λ·∇φ L_query(φ_K) averaged over tasks (H⁻¹ taken as the identity, and the mixed
    derivative −λI exact because the proximal term is quadratic). Reference: plain autograd
    through the same K SGD steps (float64, ≤ 1e-8, the finite difference's rounding)."""
    from torch.func import functional_call
    import torch.nn.functional as F

    model, batch = small_case()
    model = model.double()
    batch = peers.TaskBatch.of(batch.support.x.double(), batch.support.y, batch.query.x.double(), batch.query.y)
    theta = {n: p.detach() for n, p in model.named_parameters()}
    want = {n: torch.zeros_like(p) for n, p in theta.items()}
    for b in range(batch.tasks):
        phi = {n: p.clone().requires_grad_() for n, p in theta.items()}
        for _ in range(3):
            loss = F.cross_entropy(functional_call(model, phi, (batch.support.x[b],)), batch.support.y[b])
            loss = loss + peers.LAM / 2 * sum(((phi[n] - theta[n]) ** 2).sum() for n in phi)
            grads = torch.autograd.grad(loss, list(phi.values()))
            phi = {n: (p - 0.1 * g).detach().requires_grad_() for (n, p), g in zip(phi.items(), grads)}
        query = F.cross_entropy(functional_call(model, phi, (batch.query.x[b],)), batch.query.y[b])
        for (n, _), g in zip(phi.items(), torch.autograd.grad(query, list(phi.values()))):
            want[n] += peers.LAM * g / batch.tasks
    step = peers.peer_step("betty", model, "imaml", 3, 0.1, batch, regression=False)
    step()
    got = [p.grad for p in model.parameters()]
    assert peers.relative_error(got, list(want.values())) <= 1e-8
    exact = peers.agreement(small_case, "betty", "imaml", 3, 0.1, regression=False)
    assert exact > 0.1  # and it is not the exact implicit gradient the package computes
    assert peers.agreement(small_case, "betty", "imaml-darts", 3, 0.1, regression=False) <= 1e-8  # the package's darts
    assert peers.peer_step("betty", model, "maml", 3, 0.1, batch, regression=False) is None


def test_selected_rows_replace_their_rows_of_an_earlier_table(tmp_path):
    """--algorithms reruns some rows and keeps the rest of peers.csv (other columns too)."""
    table = tmp_path / "peers.csv"
    table.write_text("case,algorithm,bilevel_anil_s,x_peak_mib\nregression MLP B=25 K=1,maml,9.0,1.5\nother,anil,1.0,2.0\n")
    assert peers.main(["--repeats", "1", "--peers", "torchopt", "--algorithms", "maml", "--out", str(tmp_path)]) == 0
    lines = table.read_text().splitlines()
    assert lines[0].startswith("case,algorithm,bilevel_anil_s,x_peak_mib,torchopt_s")
    assert lines[1].startswith("regression MLP B=25 K=1,maml,") and ",9.0," not in lines[1]
    assert lines[2] == "other,anil,1.0,2.0,,,"
    assert peers.main(["--algorithms", "reptile"]) == 2
