"""The peers, side by side in one process: one outer step of maml, anil and imaml on the same
network and the same fixed meta-batch in this package and in

  * learn2learn 0.2.0: ``l2l.algorithms.MAML(...).clone()`` / ``adapt()`` per task (as its
    ``maml_omniglot.py`` and, for ANIL, ``anil_fc100.py`` run; benchmarks/reference.py),
  * higher 0.2.1: ``higher.innerloop_ctx`` per task,
  * TorchOpt 0.7.3: ``torchopt.MetaSGD`` per task (its few-shot MAML example) and, for iMAML,
    ``torchopt.diff.implicit.custom_root`` with ``torchopt.linear_solve.solve_cg`` (its iMAML
    example, with CG on the iMAML system instead of the normal equations, as the paper does),
  * plain Betty 0.2.1, for iMAML: two ``ImplicitProblem``s as its ``implicit_maml`` example
    runs, one task per Betty step, its default ``darts`` hypergradient (an approximation: its
    grad diff is the approximation's error, not a bug; see :func:`betty_imaml_step`).

Each peer's meta-gradient is first compared with this package's from the same θ in float64
(relative L2 difference; a peer that computes another quantity says so), then one outer step
(meta-gradient and Adam update) is timed in float32: the median of ``--repeats`` runs after a
warm-up, all in one process with the same allocator settings. A peer without the algorithm
(higher and learn2learn have no implicit gradient; the Betty example is iMAML only) is marked "—"; a peer that is not installed
is marked "not installed" (``pip install -e .[bench]``).

    python benchmarks/peers.py --data-root ../shared/data      (or: make bench ARGS="--only peers ...")

Cases: Omniglot Conv4, 5-way 1-shot, 1 query per class, meta-batch 32, with 1 and 5 inner
steps (maml, anil, imaml with 5 CG iterations); the 20-way preset's shape (20-way 1-shot,
meta-batch 16, 5 inner steps; maml, anil); the 1-64-64-1 MLP regression (meta-batch 25, one
inner step; maml). Printed as a table and written to ``--out``/peers.csv.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bilevel_anil.training.allocator import keep_freed_memory
from bilevel_anil.recipes.compare import relative_error
from bilevel_anil.core.tasks import RepeatBatch, TaskBatch
from bilevel_anil.engines import step_engine
from bilevel_anil.core.learner import Learner
from bilevel_anil.core.options import get_algorithm
from bilevel_anil.core.solvers import HypergradConfig

import reference  # noqa: E402  (learn2learn)

META_LR, LAM, CG_ITERATIONS = 0.003, 2.0, 5
PEERS = ("bilevel_anil", "learn2learn", "higher", "torchopt", "betty")


def _optional(name: str):
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return __import__(name)
    except ImportError:
        return None


higher = _optional("higher")
torchopt = _optional("torchopt")


# --- one outer step's meta-gradient per peer (left in .grad, averaged over tasks) ---------------

def _loss_fn(regression: bool):
    return F.mse_loss if regression else F.cross_entropy


def learn2learn_regression_step(model: nn.Module, batch: TaskBatch, steps: int, lr: float):
    """learn2learn's ``maml_sine.py`` loop: ``clone()``, ``adapt()`` on the MSE, per task."""
    maml = reference.l2l.algorithms.MAML(model, lr=lr)
    model.zero_grad()
    for b in range(batch.tasks):
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(F.mse_loss(learner(batch.support.x[b]), batch.support.y[b]))
        (F.mse_loss(learner(batch.query.x[b]), batch.query.y[b]) / batch.tasks).backward()


def higher_step(model: nn.Module, batch: TaskBatch, steps: int, lr: float, head_only: bool, regression: bool):
    loss_fn = _loss_fn(regression)
    model.zero_grad()
    for b in range(batch.tasks):
        sx, sy, qx, qy = batch.support.x[b], batch.support.y[b], batch.query.x[b], batch.query.y[b]
        adapted = model.head if head_only else model
        if head_only:
            sx, qx = model.body(sx), model.body(qx)
        inner = torch.optim.SGD(adapted.parameters(), lr=lr)
        with higher.innerloop_ctx(adapted, inner, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(steps):
                diffopt.step(loss_fn(fmodel(sx), sy))
            (loss_fn(fmodel(qx), qy) / batch.tasks).backward()


def torchopt_step(model: nn.Module, batch: TaskBatch, steps: int, lr: float, head_only: bool, regression: bool):
    loss_fn = _loss_fn(regression)
    model.zero_grad()
    adapted = model.head if head_only else model
    inner = torchopt.MetaSGD(adapted, lr=lr)
    state = torchopt.extract_state_dict(adapted)
    for b in range(batch.tasks):
        sx, sy, qx, qy = batch.support.x[b], batch.support.y[b], batch.query.x[b], batch.query.y[b]
        if head_only:
            sx, qx = model.body(sx), model.body(qx)
        for _ in range(steps):
            inner.step(loss_fn(adapted(sx), sy))
        (loss_fn(adapted(qx), qy) / batch.tasks).backward()
        torchopt.recover_state_dict(adapted, state)


def torchopt_imaml_step(model: nn.Module, batch: TaskBatch, steps: int, lr: float):
    """TorchOpt's iMAML example: the inner solver as a ``custom_root`` of the proximal
    objective's gradient, differentiated implicitly (here with CG on the iMAML system)."""
    names = [n for n, _ in model.named_parameters()]
    theta = tuple(p for _, p in model.named_parameters())

    def objective(phi, init, x, y):
        out = torch.func.functional_call(model, dict(zip(names, phi)), (x,))
        return F.cross_entropy(out, y) + sum(0.5 * LAM * torch.sum((a - b) ** 2) for a, b in zip(phi, init))

    @torchopt.diff.implicit.custom_root(torch.func.grad(objective, argnums=0), argnums=1,
                                        solve=torchopt.linear_solve.solve_cg(maxiter=CG_ITERATIONS))
    def inner_solver(start, init, x, y):
        phi = start
        with torch.enable_grad():
            for _ in range(steps):
                grads = torch.autograd.grad(objective(phi, init, x, y), phi)
                phi = tuple(p - lr * g for p, g in zip(phi, grads))
        return tuple(p.detach() for p in phi)

    model.zero_grad()
    start = tuple(t.detach().clone().requires_grad_() for t in theta)
    for b in range(batch.tasks):
        sx, sy, qx, qy = batch.support.x[b], batch.support.y[b], batch.query.x[b], batch.query.y[b]
        phi = inner_solver(start, theta, sx, sy)
        query = F.cross_entropy(torch.func.functional_call(model, dict(zip(names, phi)), (qx,)), qy)
        (query / batch.tasks).backward()


class _RecordGradients(torch.optim.Optimizer):
    """An optimiser that changes nothing and keeps a copy of each gradient it is given: Betty
    updates its upper problem's parameters itself, so this takes the optimiser's place to
    leave the meta-gradient in ``.grad`` for the common Adam step, as the other peers do."""

    def __init__(self, params, sink=None):
        super().__init__(params, {"sink": sink})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["sink"][:] = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                                for p in group["params"]]


def betty_imaml_step(model: nn.Module, batch: TaskBatch, steps: int, lr: float) -> Callable[[], None]:
    """Plain Betty 0.2.1 as its iMAML example runs (examples/implicit_maml/main.py in
    leopard-ai/betty): two ``ImplicitProblem``s, the inner one a copy of the network reset to
    θ at each task and trained with SGD for ``steps`` steps on the support loss plus the
    proximal term, the outer one the query loss of the adapted copy; one task per Betty step,
    the meta-batch as gradient accumulation, Betty's default ``darts`` hypergradient. The
    example's regulariser is ``λ_betty·Σ(φ − θ)²``; λ_betty = LAM / 2 gives this package's
    (LAM/2)·‖φ − θ‖². DARTS approximates H⁻¹ by the identity, so its meta-gradient is not the
    exact implicit gradient: the grad diff column measures that approximation."""
    from betty.configs import Config, EngineConfig
    from betty.engine import Engine
    from betty.envs import Env
    from betty.problems import ImplicitProblem

    current = {"task": 0}

    class Outer(ImplicitProblem):
        def get_batch(self):
            return current["task"]

        def training_step(self, b):
            return F.cross_entropy(self.inner(batch.query.x[b]), batch.query.y[b])

    class Inner(ImplicitProblem):
        def get_batch(self):
            return current["task"]

        def training_step(self, b):
            loss = F.cross_entropy(self.module(batch.support.x[b]), batch.support.y[b])
            return loss + (LAM / 2) * sum(torch.sum((p - q) ** 2)
                                          for p, q in zip(self.parameters(), self.outer.parameters()))

        def on_inner_loop_start(self):
            self.module.load_state_dict(self.outer.module.state_dict())

    class TaskEnv(Env):
        def step(self):
            pass

    sink: list[torch.Tensor] = []
    outer = Outer(name="outer", module=model, optimizer=_RecordGradients(model.parameters(), sink=sink),
                  config=Config(retain_graph=True, gradient_accumulation=batch.tasks))
    inner_module = copy.deepcopy(model)
    inner = Inner(name="inner", module=inner_module, optimizer=torch.optim.SGD(inner_module.parameters(), lr=lr),
                  config=Config(type="darts", unroll_steps=steps))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        engine = Engine(config=EngineConfig(train_iters=1), problems=[outer, inner], env=TaskEnv(),
                        dependencies={"u2l": {outer: [inner]}, "l2u": {inner: [outer]}})

    def step():
        for b in range(batch.tasks):
            current["task"] = b
            for _ in range(steps):
                engine.global_step += 1
                engine.train_step()
        for p, g in zip(model.parameters(), sink):
            p.grad = g
    return step


def peer_step(peer: str, model: nn.Module, algo_name: str, steps: int, lr: float, batch: TaskBatch,
              regression: bool) -> Optional[Callable[[], None]]:
    """The peer's meta-gradient as a function (None where the peer has no such algorithm).
    ``imaml-darts``: iMAML with the DARTS hypergradient, which only plain Betty's example has."""
    name, _, method = algo_name.partition("-")
    algo = get_algorithm(name)
    if method and peer != "betty":
        return None
    head_only = algo.adapt == "head"
    if peer == "learn2learn":
        if algo.grad == "implicit":
            return None
        if regression:
            return lambda: learn2learn_regression_step(model, batch, steps, lr)
        return lambda: reference.maml_step(model, batch, steps, lr, algo.first_order, head_only)
    if peer == "higher":
        return None if algo.grad == "implicit" else \
            (lambda: higher_step(model, batch, steps, lr, head_only, regression))
    if peer == "betty":
        implicit = algo.grad == "implicit" and not (head_only or regression)
        return betty_imaml_step(model, batch, steps, lr) if implicit else None
    if peer == "torchopt":
        if algo.grad == "implicit":
            return None if (head_only or regression) else (lambda: torchopt_imaml_step(model, batch, steps, lr))
        return lambda: torchopt_step(model, batch, steps, lr, head_only, regression)
    raise ValueError(peer)


def ours_engine(model: nn.Module, algo_name: str, steps: int, lr: float, batch: TaskBatch, regression: bool):
    name, _, method = algo_name.partition("-")  # imaml-darts: the DARTS hypergradient instead of CG
    learner = Learner(model, get_algorithm(name), "mse" if regression else "cross_entropy", LAM)
    device = str(next(model.parameters()).device)
    return step_engine(learner, RepeatBatch(batch), batch.tasks, steps, lr,
                       torch.optim.Adam(model.parameters(), lr=META_LR),
                       HypergradConfig(method or "cg", CG_ITERATIONS), device)


# --- the cases -------------------------------------------------------------------------------

def omniglot_case(data_root: str, ways: int, tasks: int, seed: int = 0):
    from bilevel_anil.data import ClassificationTasks, load_omniglot, seeded
    from bilevel_anil.models import Conv4

    splits = load_omniglot(Path(data_root), download=False)
    with seeded(seed):
        batch = ClassificationTasks(splits["train"], ways, 1, 1).sample(tasks)
        model = Conv4(ways)
    return model, batch


def regression_case(tasks: int = 25, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    amplitude = 0.1 + 4.9 * torch.rand(tasks, 1, 1, generator=g)
    phase = 3.1416 * torch.rand(tasks, 1, 1, generator=g)
    x = 10 * torch.rand(tasks, 20, 1, generator=g) - 5
    y = amplitude * torch.sin(x + phase)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    return model, TaskBatch.of(x[:, :10], y[:, :10], x[:, 10:], y[:, 10:])


def cases(data_root: Optional[str]):
    """(label, builder, algorithms, inner steps, inner lr)."""
    out = []
    if data_root:
        five = lambda: omniglot_case(data_root, 5, 32)  # noqa: E731
        twenty = lambda: omniglot_case(data_root, 20, 16)  # noqa: E731
        for k in (1, 5):
            out.append((f"omniglot 5w1s B=32 K={k}", five, ("maml", "anil", "imaml", "imaml-darts"), k,
                        0.4 if k == 1 else 0.1))
        out.append(("omniglot 20w1s B=16 K=5", twenty, ("maml", "anil"), 5, 0.1))
    out.append(("regression MLP B=25 K=1", regression_case, ("maml",), 1, 0.01))
    return out


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def agreement(build, peer: str, algo: str, steps: int, lr: float, regression: bool) -> Optional[float]:
    """Relative L2 difference between the peer's and this package's meta-gradient, float64."""
    base, batch = build()
    base = base.double()
    batch = TaskBatch.of(*(t.double() if t.is_floating_point() else t
                           for t in (batch.support.x, batch.support.y, batch.query.x, batch.query.y)))
    ours = copy.deepcopy(base)
    engine = ours_engine(ours, algo, steps, lr, batch, regression)
    engine.train_step()
    want = [g.detach().clone() for g in engine.upper.last_grads]
    theirs = copy.deepcopy(base)
    step = peer_step(peer, theirs, algo, steps, lr, batch, regression)
    if step is None:
        return None
    step()
    return relative_error(_grads(theirs), want)


def timing(fn: Callable[[], None], repeats: int) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def time_case(build, peer: str, algo: str, steps: int, lr: float, regression: bool, repeats: int,
              device: str = "cpu") -> Optional[float]:
    model, batch = build()
    model, batch = model.to(device), batch.to(device)
    if peer == "bilevel_anil":
        engine = ours_engine(model, algo, steps, lr, batch, regression)
        return timing(engine.train_step, repeats)
    step = peer_step(peer, model, algo, steps, lr, batch, regression)
    if step is None:
        return None
    optimizer = torch.optim.Adam(model.parameters(), lr=META_LR)

    def outer():
        step()
        optimizer.step()
    return timing(outer, repeats)


def peak_mib(build, peer: str, algo: str, steps: int, lr: float, regression: bool, device: str) -> Optional[float]:
    """Peak memory of one outer step above the level before it (after a warm-up step), in
    this process: meaningful only when freed memory leaves the resident set (the child
    processes of :func:`peaks_in_children` run with ``MALLOC_MMAP_THRESHOLD_=65536``)."""
    from bilevel_anil.training.profiling import measure

    model, batch = build()
    model, batch = model.to(device), batch.to(device)
    if peer == "bilevel_anil":
        fn = ours_engine(model, algo, steps, lr, batch, regression).train_step
    else:
        fn = peer_step(peer, model, algo, steps, lr, batch, regression)
        if fn is None:
            return None
    fn()
    peak = measure(fn, device).peak_mib
    return None if peak is None else round(peak, 1)


def peaks_in_children(args, label: str, algo: str, peers_: list[str]) -> dict[str, object]:
    """Each peer's peak memory for one case, measured in a fresh process with glibc returning
    freed memory to the system (the allocator setting of the timings keeps it, which would
    hide the peak)."""
    import json
    import os
    import subprocess

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "BILEVEL_ANIL_MALLOC": "system"}
    out = {}
    for peer in ["bilevel_anil", *peers_]:
        done = subprocess.run([sys.executable, __file__, "--peak-of", json.dumps([label, algo, peer]),
                               "--device", args.device] + (["--data-root", args.data_root] if args.data_root else []),
                              capture_output=True, text=True, env=env, timeout=900)
        value = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else "error"
        out[f"{peer}_peak_mib"] = value
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="folder holding omniglot-py/ (without it: the regression case only)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--peers", default=",".join(PEERS[1:]), help="comma-separated: learn2learn,higher,torchopt,betty")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the gradient check runs on the CPU in float64)")
    p.add_argument("--algorithms", default=None,
                   help="comma-separated: only these rows (e.g. imaml-darts); they replace the same rows of an "
                        "existing peers.csv in --out, whose other rows are kept")
    p.add_argument("--memory", action="store_true",
                   help="also the peak memory of one step, each peer in its own process (slower)")
    p.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)  # internal: one child's measurement
    args = p.parse_args(argv)
    if args.peak_of:
        import json
        label, algo, peer = json.loads(args.peak_of)
        for case_label, build, _, steps, lr in cases(args.data_root):
            if case_label == label:
                value = peak_mib(build, peer, algo, steps, lr, label.startswith("regression"), args.device)
                print("—" if value is None else value)
                return 0
        return 2
    if args.repeats < 1 or any(q not in PEERS[1:] for q in args.peers.split(",") if q):
        print("peers.py: error: --repeats must be positive and --peers a list of learn2learn, higher, torchopt, betty",
              file=sys.stderr)
        return 2
    if args.data_root and not (Path(args.data_root) / "omniglot-py").is_dir():
        print(f"peers.py: error: no Omniglot copy under {args.data_root}/omniglot-py: pass --data-root DIR",
              file=sys.stderr)
        return 2
    keep_freed_memory()  # every peer's timing runs under the same allocator settings
    torch.manual_seed(0)
    peers = [q for q in args.peers.split(",") if q]
    installed = {"learn2learn": True, "betty": True, "higher": higher is not None, "torchopt": torchopt is not None}
    only = set(args.algorithms.split(",")) if args.algorithms else None
    known = {a for _, _, algos, _, _ in cases(args.data_root) for a in algos}
    if only is not None and not only <= known:
        print(f"peers.py: error: --algorithms takes {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    rows = []
    for label, build, algos, steps, lr in cases(args.data_root):
        regression = label.startswith("regression")
        for algo in algos:
            if only is not None and algo not in only:
                continue
            row = {"case": label, "algorithm": algo}
            ours = time_case(build, "bilevel_anil", algo, steps, lr, regression, args.repeats, args.device)
            row["bilevel_anil_s"] = round(ours, 4)
            for peer in peers:
                if not installed[peer]:
                    row[f"{peer}_s"], row[f"{peer}_x"], row[f"{peer}_grad_diff"] = "not installed", "", ""
                    continue
                diff = agreement(build, peer, algo, steps, lr, regression)
                seconds = None if diff is None else time_case(build, peer, algo, steps, lr, regression, args.repeats,
                                                              args.device)
                row[f"{peer}_s"] = "—" if seconds is None else round(seconds, 4)
                row[f"{peer}_x"] = "" if seconds is None else round(seconds / ours, 2)
                row[f"{peer}_grad_diff"] = "" if diff is None else f"{diff:.1e}"
            if args.memory:
                row.update(peaks_in_children(args, label, algo, [q for q in peers if installed[q]]))
            rows.append(row)
            print(_line(row, peers), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    if only is not None and (out / "peers.csv").is_file():
        rows, columns = _merged(out / "peers.csv", rows)
    with open(out / "peers.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out / 'peers.csv'}")
    return 0


def _merged(path: Path, new: list[dict]) -> tuple[list[dict], list[str]]:
    """The rows of an earlier peers.csv with ``new`` in place of the rows of the same case and
    algorithm (rows not there before go after the last row of their case), and the columns:
    the earlier table's, then any new ones."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    for row in new:
        same = [i for i, old in enumerate(rows) if (old["case"], old["algorithm"]) == (row["case"], row["algorithm"])]
        if same:
            rows[same[0]] = row
        else:
            case = [i for i, old in enumerate(rows) if old["case"] == row["case"]]
            rows.insert(case[-1] + 1 if case else len(rows), row)
    return rows, list(dict.fromkeys(columns + [k for row in new for k in row]))


def _line(row: dict, peers: list[str]) -> str:
    cells = [f"{row['case']:<26} {row['algorithm']:<6} ours {row['bilevel_anil_s']:.4f} s"]
    for peer in peers:
        s, x, d = row[f"{peer}_s"], row[f"{peer}_x"], row[f"{peer}_grad_diff"]
        cells.append(f"{peer} {s if isinstance(s, str) else f'{s:.4f} s'}" + (f" ({x}x, grad diff {d})" if x else ""))
    return " | ".join(cells)


if __name__ == "__main__":
    sys.exit(main())
