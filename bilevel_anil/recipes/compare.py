"""``python run.py compare-grads``: implicit vs unrolled meta-gradients on one fixed meta-batch.

Every method runs one outer step through the same Env, Problems and Engine as training (on a
fresh copy of the same θ); its meta-gradient is compared with the exact implicit gradient of
the proximal inner objective at the inner loop's last iterate φ:

* head only (``--head-only``, the default): a direct linear solve of the inner Hessian
  ``H = λ(I + H_task/λ)`` per task (block by block);
* full network: textbook CG run until the residual is below ``--exact-tol``·‖v‖ (stated
  in the output as such, with the residual reached).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from ..core.algorithms import Algorithm
from ..core.options import get_algorithm
from ..core.tasks import RepeatBatch, TaskBatch, seeded
from ..errors import (TrainingDiverged, UsageError)
from ..core.learner import Learner
from ..core.solvers import HypergradConfig, cg_solve
from ..training.profiling import measure
from ..settings import setting, shared

if TYPE_CHECKING:
    from ..api.meta_learner import MetaLearner


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


@dataclass
class CompareConfig:
    """What to compare on (``python run.py compare-grads --help``; each field is its flag)."""

    dataset: str = setting("omniglot", "{datasets}", metavar="NAME")
    data_root: Optional[str] = shared("data_root")
    download: bool = shared("download")
    head_only: bool = setting(True, "adapt the full network (imaml; exact gradient by CG to convergence) instead of "
                              "the head only (ianil; exact gradient by a direct solve)", flag="--full")
    ways: Optional[int] = setting(None, "classes per task (omniglot; default 5)")
    shots: int = setting(1, "support examples per class (sine: points)")
    queries: int = setting(15, "query examples per class (sine: points)")
    tasks: int = setting(8, "tasks in the fixed meta-batch")
    lam: float = setting(2.0, "proximal strength λ")
    inner_lr: Optional[float] = setting(None, "inner SGD step (default 0.1 omniglot, 0.01 sine: small enough for the "
                                        "proximal inner loop to converge, which the implicit gradient assumes)")
    inner_steps: int = setting(100, "SGD steps to the inner solution φ used by the implicit methods")
    ks: list[int] = setting(help="CG/Neumann iteration counts", factory=lambda: [1, 2, 5, 10, 20], parse=_int_list,
                            metavar="K,K,...")
    unroll: list[int] = setting(help="unrolled inner-step counts K", factory=lambda: [1, 2, 5, 10, 20, 50, 100],
                                parse=_int_list, metavar="K,K,...")
    darts_radii: list[float] = setting(help="DARTS finite-difference radii", factory=lambda: [1.0, 0.1, 0.01, 0.001],
                                       parse=_float_list, metavar="R,R,...")
    neumann_alpha: Optional[float] = setting(None, "Neumann step size (default 1 / the inner Hessian's largest "
                                             "eigenvalue, estimated by power iteration)")
    exact_tol: float = setting(1e-6, "full network: CG tolerance of the exact gradient")
    exact_max_iterations: int = setting(2000, "full network: most CG iterations of the exact gradient")
    seed: int = shared("seed")
    device: Optional[str] = shared("device")
    out: Optional[str] = shared("out")


# --- the reference -------------------------------------------------------------------------

def _flat(ts: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.flatten() for t in ts])


def exact_implicit_gradient(learner: Learner, batch: TaskBatch, steps: int, lr: float,
                            solver: str, tol: float = 1e-6, max_iterations: int = 2000) -> tuple[list[Tensor], dict]:
    """``dL/dθ`` by the implicit function theorem at φ = ``steps`` SGD steps from θ, with
    ``H⁻¹ v`` from a direct per-task solve (``solver="direct"``), CG to ``tol`` (``"cg"``), or
    ``H⁻¹ ≈ I`` (``"identity"``: the limit Betty's DARTS approximates as its radius shrinks).
    Returns the gradient (in ``model.parameters()`` order) and facts about the solve."""
    theta = learner.meta_params()
    names = list(theta)
    phi = learner.adapt(theta, batch.support.x, batch.support.y, steps, lr)
    phi = {n: p.detach().requires_grad_() for n, p in phi.items()}
    query = learner.task_losses(learner.predictor(theta, batch.query.x)(phi), batch.query.y).mean()
    grads = torch.autograd.grad(query, [theta[n] for n in names] + list(phi.values()), allow_unused=True)
    direct, v = grads[:len(names)], list(grads[len(names):])
    inner = learner.inner_loss(learner.predictor(theta, batch.support.x), phi, batch.support.y, theta)
    inner_grad = torch.autograd.grad(inner, list(phi.values()), create_graph=True)
    stationarity = _flat(inner_grad).norm().item()

    def hvp(vectors):
        return torch.autograd.grad(inner_grad, list(phi.values()), grad_outputs=vectors, retain_graph=True)

    info = {"solver": solver, "inner_grad_norm": stationarity, "largest_eigenvalue": _largest_eigenvalue(hvp, v)}
    if solver == "direct":
        # H is block diagonal over tasks: probing coordinate i of every task at once gives
        # column i of all B blocks in one Hessian-vector product.
        tasks = batch.tasks
        sizes = [p[0].numel() for p in phi.values()]
        d = sum(sizes)
        columns = []
        for i in range(d):
            e = torch.zeros(tasks, d, dtype=v[0].dtype, device=v[0].device)
            e[:, i] = 1.0
            parts = [c.view(tasks, *p.shape[1:]) for c, p in zip(e.split(sizes, dim=1), phi.values())]
            columns.append(torch.cat([h.flatten(1) for h in hvp(parts)], dim=1))
        hessian = torch.stack(columns, dim=2)  # [B, d, d]
        rhs = torch.cat([t.flatten(1) for t in v], dim=1)
        x_flat = torch.linalg.solve(hessian, rhs)
        x = [c.view_as(p) for c, p in zip(x_flat.split(sizes, dim=1), v)]
        info["residual"] = (torch.cat([h.flatten(1) for h in hvp(x)], 1) - rhs).norm().item() / rhs.norm().item()
    elif solver == "identity":
        x = [t.detach() for t in v]
        info["residual"] = float("nan")
    else:
        x = cg_solve(hvp, [t.detach() for t in v], max_iterations, tol)
        info["residual"] = (_flat(hvp(x)) - _flat(v)).norm().item() / _flat(v).norm().item()
    mixed = torch.autograd.grad(inner_grad, [theta[n] for n in names], grad_outputs=x, allow_unused=True)
    total = [(torch.zeros_like(theta[n]) if d is None else d) - (0 if m is None else m)
             for n, d, m in zip(names, direct, mixed)]
    return [t.detach() for t in total], info


def _largest_eigenvalue(hvp, like: Sequence[Tensor], iterations: int = 30) -> float:
    """Power iteration on the inner Hessian (for a Neumann step size that converges)."""
    g = torch.Generator(device=like[0].device).manual_seed(0)
    x = [torch.randn(t.shape, generator=g, device=t.device, dtype=t.dtype) for t in like]
    value = 0.0
    for _ in range(iterations):
        norm = _flat(x).norm()
        x = [t / norm for t in x]
        hx = hvp(x)
        value = _flat(hx) @ _flat(x)
        x = [t.detach() for t in hx]
    return float(value)


# --- methods through the Engine -------------------------------------------------------------

def engine_gradient(model: torch.nn.Module, algorithm: Algorithm, loss, lam: float, batch: TaskBatch,
                    steps: int, lr: float, hypergrad: Optional[HypergradConfig], device: str, head=None):
    """One outer step of ``algorithm`` through Betty (on a copy of ``model``); its meta-gradient
    and the step's wall time and peak memory. ``head``: the head's module path or a predicate
    on parameter names (default the last ``nn.Linear``)."""
    from ..engines import step_engine

    model = copy.deepcopy(model)
    engine = step_engine(Learner(model, algorithm, loss, lam, head=head), RepeatBatch(batch), batch.tasks, steps, lr,
                         torch.optim.SGD(model.parameters(), lr=0.0), hypergrad, device)
    m = measure(engine.train_step, device)
    return engine.upper.last_grads, m


def relative_error(got: list[Tensor], want: list[Tensor]) -> float:
    """Relative L2 error ‖got − want‖ / ‖want‖ over all tensors, flattened together."""
    g, w = _flat(got), _flat(want)
    return ((g - w).norm() / w.norm()).item()


def _compare(got: list[Tensor], want: list[Tensor]) -> tuple[float, float]:
    g, w = _flat(got), _flat(want)
    cosine = (g @ w / (g.norm() * w.norm())).item() if g.norm() > 0 else float("nan")
    return cosine, relative_error(got, want)


def _sine_batch(cfg: CompareConfig) -> tuple[torch.nn.Module, str, TaskBatch]:
    from ..data.sine import SineTasks
    from ..models import MLP
    with seeded(cfg.seed):
        return MLP(), "mse", SineTasks(cfg.shots, cfg.queries).sample(cfg.tasks)


def _omniglot_batch(cfg: CompareConfig) -> tuple[torch.nn.Module, str, TaskBatch]:
    from ..data import ClassificationTasks, load_omniglot
    from ..models import Conv4
    splits = load_omniglot(Path(cfg.data_root or "data"), download=cfg.download)
    with seeded(cfg.seed):
        model = Conv4(cfg.ways)
        return model, "cross_entropy", ClassificationTasks(splits["train"], cfg.ways, cfg.shots,
                                                             cfg.queries).sample(cfg.tasks)


@dataclass(frozen=True)
class CompareData:
    """A data set compare-grads runs on: its fixed meta-batch (network, loss, tasks), whether
    it has classes (``--ways``), and the default inner step (small enough for the proximal
    inner loop to converge, which the implicit gradient assumes)."""

    batch: Any
    classes: bool
    inner_lr: float


COMPARE_DATASETS: dict[str, CompareData] = {"omniglot": CompareData(_omniglot_batch, True, 0.1),
                                            "sine": CompareData(_sine_batch, False, 0.01)}


def fixed_batch(cfg: CompareConfig) -> tuple[torch.nn.Module, str, TaskBatch]:
    """The network, its loss, and the one meta-batch every method sees."""
    return COMPARE_DATASETS[cfg.dataset].batch(cfg)


METHODS = ("first-order", "cg", "betty-cg", "neumann", "darts", "unrolled")


@dataclass
class Comparison:
    """What ``compare_meta_gradients`` measured: one row per method and setting (``method``,
    ``knob``, ``value``, ``cosine`` and ``rel_error`` against the exact implicit gradient,
    ``seconds``, ``peak_mib``), facts about the exact solve (``exact``), the Neumann step used."""

    rows: list[dict]
    exact: dict
    neumann_alpha: float
    algorithm: str

    def table(self) -> str:
        """The rows as aligned text."""
        lines = [f"{'method':<12}{'knob':<13}{'value':>8}  {'cosine':>9}  {'rel. error':>11}  {'seconds':>8}"]
        for r in self.rows:
            lines.append(f"{r['method']:<12}{r['knob']:<13}{r['value']!s:>8}  {r['cosine']:9.5f}  {r['rel_error']:11.3e}"
                         f"  {r['seconds']:8.3f}")
        return "\n".join(lines)


def compare_meta_gradients(learner: MetaLearner, batch: TaskBatch, *, methods: Sequence[str] = METHODS,
                           ks: Sequence[int] = (1, 2, 5, 10, 20), unroll: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
                           darts_radii: Sequence[float] = (1.0, 0.1, 0.01, 0.001), inner_steps: int = 100,
                           lam: Optional[float] = None, neumann_alpha: Optional[float] = None,
                           exact_tol: float = 1e-6, exact_max_iterations: int = 2000, device: Optional[str] = None,
                           report: Optional[Callable[[str], Any]] = None) -> Comparison:
    """Every meta-gradient of the proximal inner objective on one fixed batch, against the exact
    implicit gradient.

    Implicit (CG, Betty's CG, Neumann, DARTS), unrolled and first-order meta-gradients are each
    computed through the same Env, Problems and Engine as training, at the inner loop's last
    iterate φ. The inner loop adapts what the learner adapts: the head only (the exact gradient
    by a direct solve per task) or every parameter (CG run to ``exact_tol``).

    Args:
        learner: A ``MetaLearner``: its network, head, loss and
            inner step size; its λ when it is proximal (imaml, ianil), else ``lam``.
        batch: The fixed tasks (``TaskBatch``).
        methods: Which of ``"first-order"``, ``"cg"``, ``"betty-cg"``, ``"neumann"``,
            ``"darts"``, ``"unrolled"`` to measure.
        ks: Iterations of the implicit methods.
        unroll: Unrolled step counts K.
        darts_radii: DARTS's finite-difference radii.
        inner_steps: SGD steps of the inner loop that reaches φ (the implicit methods assume
            the inner problem is solved there).
        lam: λ for a learner without a proximal term (default 2).
        neumann_alpha: Neumann's step (default 1 / the inner Hessian's largest eigenvalue, by
            power iteration: a step that converges).
        exact_tol: The relative residual the exact solve stops at (every parameter adapted).
        exact_max_iterations: Its iteration cap.
        device: Where to compute (default: the learner's).
        report: A function called with each row's text as it is measured (e.g. ``print``).

    Returns:
        A ``Comparison`` with ``rows`` (one per method and setting, each with ``method``,
        ``knob``, ``value``, ``cosine`` and ``rel_error`` against the exact gradient, ``seconds``,
        ``peak_mib``), ``exact`` (facts about the exact solve, among them the inner gradient
        norm at φ), ``neumann_alpha``, and ``table()`` as text.

    Raises:
        ValueError: One line for an unknown method or a non-positive count.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from bilevel_anil import MetaLearner, TaskBatch, compare_meta_gradients
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
        >>> batch = TaskBatch.of(torch.randn(4, 5, 2), torch.randn(4, 5, 1), torch.randn(4, 5, 2), torch.randn(4, 5, 1))
        >>> result = compare_meta_gradients(MetaLearner(net, "anil", loss="mse", inner_lr=0.05), batch,
        ...                                 methods=("cg", "unrolled"), ks=(20,), unroll=(100,))
        >>> [r["rel_error"] < 1e-4 for r in result.rows]
        [True, True]
    """
    from ..api.meta_learner import MetaLearner
    from ..core.solvers import HYPERGRADS

    if not isinstance(learner, MetaLearner):
        raise UsageError(f"learner must be a MetaLearner, not {type(learner).__name__}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}")
    device = device or learner.device
    inner = learner.learner
    head_only = not inner.adapts_body
    name = "ianil" if head_only else "imaml"
    lam = inner.lam if inner.algorithm.proximal else (2.0 if lam is None else lam)
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise UsageError(f"lam must be a positive number, got {lam!r}")
    head = inner.head.module or (lambda n, keep=frozenset(inner.head.names): n in keep)
    loss, lr, model = inner.loss, learner.inner_lr, learner.model
    batch = batch.to(device)
    implicit = get_algorithm(name)
    solver = "direct" if head_only else "cg"
    reference = Learner(copy.deepcopy(model), implicit, loss, lam, head=head)
    ref = measure(lambda: exact_implicit_gradient(reference, batch, inner_steps, lr, solver, exact_tol,
                                                  exact_max_iterations), device)
    exact, info = ref.value
    info = {**info, "seconds": ref.seconds}
    if not (math.isfinite(info["inner_grad_norm"]) and all(torch.isfinite(g).all() for g in exact)):
        raise TrainingDiverged(f"the inner loop diverged at inner lr {lr} (non-finite inner gradient or exact "
                               "meta-gradient): lower the inner lr")
    alpha = neumann_alpha if neumann_alpha is not None else 1.0 / info["largest_eigenvalue"]
    rows: list[dict] = []

    def add(method: str, knob: str, value, grads, m):
        cosine, error = _compare(grads, exact)
        rows.append({"method": method, "knob": knob, "value": value, "cosine": cosine, "rel_error": error,
                     "seconds": m.seconds, "peak_mib": m.peak_mib})
        if report is not None:
            report(f"  {method:<10} {knob:<12} {value:>8}  cosine {cosine:8.5f}  rel. error {error:10.3e}  "
                   f"{m.seconds:7.3f} s  {'' if m.peak_mib is None else f'{m.peak_mib:8.1f} MiB'}")

    def engine(algo, steps, hg):
        return engine_gradient(model, algo, loss, lam, batch, steps, lr, hg, device, head=head)

    engine(implicit, 1, HypergradConfig("cg", 1))  # warm-up
    if "first-order" in methods:
        add("first-order", "inner steps", inner_steps, *engine(get_algorithm(name, first_order=True, grad="unrolled"),
                                                               inner_steps, None))
    for k in ks:
        for method in ("cg", "betty-cg", "neumann"):
            if method in methods and method in HYPERGRADS:
                add(method, "iterations", k, *engine(implicit, inner_steps, HypergradConfig(method, k, alpha)))
    if "darts" in methods:
        for radius in darts_radii:
            add("darts", "radius", radius, *engine(implicit, inner_steps, HypergradConfig("darts", 1, darts_alpha=radius)))
    if "unrolled" in methods:
        unrolled = get_algorithm(name, grad="unrolled")
        for k in unroll:
            add("unrolled", "inner steps", k, *engine(unrolled, k, None))
    return Comparison(rows, info, alpha, name)


def run_comparison(cfg: CompareConfig) -> list[dict]:
    """Compute every method's meta-gradient; write ``comparison.csv``/``.json``/``.png`` to ``cfg.out``."""
    from ..api.meta_learner import MetaLearner

    torch.manual_seed(cfg.seed)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, loss, batch = fixed_batch(cfg)
    lr = cfg.inner_lr if cfg.inner_lr is not None else COMPARE_DATASETS[cfg.dataset].inner_lr
    name = "ianil" if cfg.head_only else "imaml"
    learner = MetaLearner(model, name, loss=loss, lam=cfg.lam, inner_lr=lr, device=device)
    print(f"compare-grads: {name} ({'head only' if cfg.head_only else 'full network'}) on {cfg.dataset}, "
          f"{cfg.tasks} tasks, λ={cfg.lam}, inner lr {lr}, φ after {cfg.inner_steps} SGD steps", flush=True)
    result = compare_meta_gradients(learner, batch, ks=cfg.ks, unroll=cfg.unroll, darts_radii=cfg.darts_radii,
                                    inner_steps=cfg.inner_steps, neumann_alpha=cfg.neumann_alpha,
                                    exact_tol=cfg.exact_tol, exact_max_iterations=cfg.exact_max_iterations,
                                    device=device,
                                    report=lambda line: print(line, flush=True))
    info, rows = result.exact, result.rows
    print(f"  exact implicit gradient: {'direct solve per task' if cfg.head_only else 'CG to convergence'}, "
          f"relative residual {info['residual']:.1e}, {info['seconds']:.2f} s; inner gradient norm "
          f"{info['inner_grad_norm']:.2e}; largest inner Hessian eigenvalue {info['largest_eigenvalue']:.3g}")
    out = Path(cfg.out or "runs/compare-grads")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "comparison.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "comparison.json").write_text(json.dumps({"config": asdict(cfg), "exact": info,
                                                     "neumann_alpha": result.neumann_alpha, "rows": rows}, indent=2))
    plot_comparison(rows, out / "comparison.png",
                    f"{name} on {cfg.dataset}: meta-gradient error against the exact implicit gradient")
    print(f"  wrote {out / 'comparison.csv'}, {out / 'comparison.json'} and {out / 'comparison.png'}")
    return rows


def plot_comparison(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method, marker in (("cg", "o"), ("betty-cg", "x"), ("neumann", "s")):
        pts = [(r["value"], r["rel_error"]) for r in rows if r["method"] == method]
        left.plot(*zip(*pts), marker=marker, label=method)
    fo = [r["rel_error"] for r in rows if r["method"] == "first-order"]
    darts = [r for r in rows if r["method"] == "darts"]
    for ax in (left, right):
        ax.axhline(fo[0], color="gray", ls="--", label="first order")
        if darts:
            best = min(darts, key=lambda r: r["value"])
            ax.axhline(best["rel_error"], color="purple", ls=":", label=f"darts (radius {best['value']})")
        ax.set_yscale("log")
        ax.set_ylabel("relative L2 error")
        ax.grid(alpha=0.3)
    left.set_xlabel("hypergradient iterations k")
    left.set_xscale("log")
    pts = [(r["value"], r["rel_error"]) for r in rows if r["method"] == "unrolled"]
    right.plot(*zip(*pts), marker="o", color="C3", label="unrolled")
    right.set_xlabel("unrolled inner steps K")
    right.set_xscale("log")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- command line --------------------------------------------------------------------------
