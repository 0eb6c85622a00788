"""Speed and memory of one outer step: this package against a learn2learn-style loop and the floor.

    python benchmarks/run_benchmarks.py --data-root ../shared/data   (or: make bench ARGS=...)

Cases: Omniglot Conv4 (64 channels, 28x28), 5-way 1-shot, 1 query per class, meta-batch 32;
anil, foanil, maml, fomaml and imaml (CG, 5 iterations) with 1 and 5 inner steps. Each case
is measured side by side in one process on one fixed meta-batch: a warm-up, then the median
of ``--repeats`` runs of

  (a) this package's outer step (Betty Engine: inner loop, meta-gradient, Adam update),
  (b) the learn2learn-style reference (benchmarks/reference.py) with the same model and
      hyper-parameters, whose meta-gradient must equal (a)'s to 1e-5 (relative L2),
  (c) the floor: one plain forward and backward pass of the network over all images of the
      meta-batch (support and query sets of every task).

Peak memory (above the level before the step) is measured in a child process with
``MALLOC_MMAP_THRESHOLD_=65536`` (large tensors returned to the system on free; on CUDA
``max_memory_allocated``), timings in this process with the normal allocator. Also: the peak
memory of maml and imaml as inner steps grow (1, 5, 10, 20), and where an anil outer step's
time goes (task sampling, Betty's bookkeeping, the computation itself); and bodies: anil and
foanil on ResNet-18 (generic per-task path, ``--train-body all`` and ``bn``) against the
plain forward+backward floor of the same images and the same trainable parameters, and the
generic per-task path against the hand-written one on Conv4; and ``--task-chunk`` C = 1, 4,
8, 32 for maml and imaml with 5 inner steps (peak memory and step time). Results are printed and
written as CSV files to ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import subprocess
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bilevel_anil.core.options import get_algorithm
from bilevel_anil.recipes.compare import relative_error
from bilevel_anil.data import ClassificationTasks, load_omniglot, seeded
from bilevel_anil.core.tasks import RepeatBatch, TaskBatch
from bilevel_anil.engines import MetaEngine, step_engine
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import Conv4, generic_path, image_model, set_meta_trained
from bilevel_anil.problems import HypergradConfig
from bilevel_anil.training.profiling import MMAP_ENV, measure

import reference  # noqa: E402

INNER_LR, META_LR, LAM, CG_ITERATIONS = 0.4, 0.003, 2.0, 5
ALGOS = ["anil", "foanil", "maml", "fomaml", "imaml"]


CHUNKS = (1, 4, 8, 32)  # --task-chunk sweep (32: the whole meta-batch)


def build(model, algo_name: str, steps: int, sampler, tasks: int, device: str, task_chunk=None) -> MetaEngine:
    algo = get_algorithm(algo_name)
    return step_engine(Learner(model, algo, "cross_entropy", LAM), sampler, tasks, steps, INNER_LR,
                       torch.optim.Adam(model.parameters(), lr=META_LR), HypergradConfig("cg", CG_ITERATIONS), device,
                       task_chunk=task_chunk)


def median_run(fn, repeats: int, device: str) -> tuple[float, float]:
    fn()  # warm-up
    runs = [measure(fn, device) for _ in range(repeats)]
    return statistics.median(r.seconds for r in runs), max(r.peak_mib or 0.0 for r in runs)


def floor_step(model, batch: TaskBatch, optimizer):
    x = torch.cat([batch.support.x.flatten(0, 1), batch.query.x.flatten(0, 1)])
    y = torch.cat([batch.support.y.flatten(), batch.query.y.flatten()])

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step


def split_floor_step(model, batch: TaskBatch, optimizer):
    """The floor's images in two passes, support sets then query sets (as a meta-step runs
    them); with glibc, tensors over 32 MB are mmapped afresh on every allocation, so one
    320-image pass pays page faults that two 160-image passes avoid."""
    parts = [(batch.support.x.flatten(0, 1), batch.support.y.flatten()),
             (batch.query.x.flatten(0, 1), batch.query.y.flatten())]

    def step():
        optimizer.zero_grad()
        for x, y in parts:
            F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step


def reference_step(model, algo_name: str, steps: int, batch: TaskBatch, optimizer):
    algo = get_algorithm(algo_name)

    def step():
        if algo.grad == "implicit":
            grads = reference.imaml_step(model, batch, steps, INNER_LR, LAM, CG_ITERATIONS)
        else:
            grads = reference.maml_step(model, batch, steps, INNER_LR, algo.first_order, algo.adapt == "head")
        optimizer.step()
        return grads
    return step


def gradient_check(base, name: str, steps: int, batch: TaskBatch, device: str) -> float:
    """Relative L2 difference of the two meta-gradients from the same θ, in float64 (CG on the
    inner Hessian amplifies float32 rounding to ~1e-4, which would hide a real mismatch)."""
    batch64 = TaskBatch(type(batch.support)(batch.support.x.double(), batch.support.y),
                           type(batch.query)(batch.query.x.double(), batch.query.y))
    ours_model, ref_model = copy.deepcopy(base).double(), copy.deepcopy(base).double()
    engine = build(ours_model, name, steps, RepeatBatch(batch64), batch.tasks, device)
    engine.train_step()
    want = reference_step(ref_model, name, steps, batch64, torch.optim.SGD(ref_model.parameters(), lr=0.0))()
    return relative_error(engine.upper.last_grads, want)


def step_costs(base: torch.nn.Module, batch: TaskBatch, repeats: int, device: str, peaks: dict) -> list[dict]:
    rows = []
    floor_model = copy.deepcopy(base)
    floor_s, _ = median_run(floor_step(floor_model, batch, torch.optim.Adam(floor_model.parameters())), repeats, device)
    split_s, _ = median_run(split_floor_step(floor_model, batch, torch.optim.Adam(floor_model.parameters())),
                            repeats, device)
    print(f"floor: one pass over all 320 images {1000 * floor_s:.1f} ms; support and query in two passes "
          f"{1000 * split_s:.1f} ms", flush=True)
    for steps in (1, 5):
        for name in ALGOS:
            error = gradient_check(base, name, steps, batch, device)
            ours_model, ref_model = copy.deepcopy(base), copy.deepcopy(base)
            engine = build(ours_model, name, steps, RepeatBatch(batch), batch.tasks, device)
            ref_opt = torch.optim.Adam(ref_model.parameters(), lr=META_LR)
            ours_s, _ = median_run(engine.train_step, repeats, device)
            ref_s, _ = median_run(reference_step(ref_model, name, steps, batch, ref_opt), repeats, device)
            peak = peaks.get((name, steps), {})
            row = {"case": name, "inner_steps": steps, "ours_s": ours_s, "reference_s": ref_s, "floor_s": floor_s,
                   "split_floor_s": split_s, "ours_over_reference": ours_s / ref_s,
                   "ours_over_floor": ours_s / floor_s, "ours_over_split_floor": ours_s / split_s,
                   "grad_rel_error": error, "ours_peak_mib": peak.get("ours"), "reference_peak_mib": peak.get("reference"),
                   "floor_peak_mib": peaks.get(("floor", 0), {}).get("ours")}
            rows.append(row)
            print(f"{name:<7} K={steps:<2} ours {1000 * ours_s:8.1f} ms  reference {1000 * ref_s:8.1f} ms  "
                  f"floor {1000 * floor_s:6.1f} ms  ours/ref {row['ours_over_reference']:5.2f}  "
                  f"ours/floor {row['ours_over_floor']:5.2f} (split {row['ours_over_split_floor']:5.2f})  grad err {error:.1e}  "
                  f"peak {_mib(row['ours_peak_mib'])} / {_mib(row['reference_peak_mib'])} / "
                  f"{_mib(row['floor_peak_mib'])} MiB", flush=True)
    return rows


def _mib(value) -> str:
    return "   n/a" if value is None else f"{value:6.1f}"


def peak_memory(base: torch.nn.Module, batch: TaskBatch, device: str, only=None, sweep=(1, 5, 10, 20)) -> dict:
    """Peak memory of one step of every case the part ``only`` (None: all) reports (after a
    warm-up step), in a process whose large allocations are returned to the system on free
    (see profiling.reexec_with_returnable_memory)."""
    peaks: dict = {}
    if only == "chunks":  # only the chunk sweep and the learn2learn-style loop beside it
        sweep, algos = (5,), ("maml", "imaml")
    else:
        algos = ALGOS
    floor_model = copy.deepcopy(base)
    fn = floor_step(floor_model, batch, torch.optim.Adam(floor_model.parameters()))
    fn()
    peaks[("floor", 0)] = {"ours": measure(fn, device).peak_mib}
    for steps in sorted({1, 5, *sweep} if only != "chunks" else {5}):
        for name in algos:
            if steps not in (1, 5) and name not in ("maml", "imaml"):
                continue
            engine = build(copy.deepcopy(base), name, steps, RepeatBatch(batch), batch.tasks, device)
            engine.train_step()
            entry = {"ours": measure(engine.train_step, device).peak_mib}
            if steps in (1, 5):
                ref_model = copy.deepcopy(base)
                ref = reference_step(ref_model, name, steps, batch, torch.optim.Adam(ref_model.parameters()))
                ref()
                entry["reference"] = measure(ref, device).peak_mib
            peaks[(name, steps)] = entry
    for name in ("maml", "imaml"):
        for chunk in CHUNKS:
            engine = build(copy.deepcopy(base), name, 5, RepeatBatch(batch), batch.tasks, device, chunk)
            engine.train_step()
            peaks[(f"{name}/chunk", chunk)] = {"ours": measure(engine.train_step, device).peak_mib}
    return peaks


def chunk_sweep(base, batch: TaskBatch, repeats: int, device: str, peaks: dict) -> list[dict]:
    """--task-chunk C for maml and imaml with 5 inner steps: peak memory (from the peak pass)
    and median step time against C, beside the learn2learn-style loop's peak (one task's
    graph at a time) and the unchunked step's time."""
    rows = []
    for name in ("maml", "imaml"):
        reference_peak = peaks.get((name, 5), {}).get("reference")
        whole_s = None
        for chunk in sorted(CHUNKS, reverse=True):
            engine = build(copy.deepcopy(base), name, 5, RepeatBatch(batch), batch.tasks, device, chunk)
            seconds, _ = median_run(engine.train_step, repeats, device)
            whole_s = whole_s or seconds  # the largest C (the whole meta-batch) comes first
            peak = peaks.get((f"{name}/chunk", chunk), {}).get("ours")
            row = {"case": name, "inner_steps": 5, "task_chunk": chunk, "step_s": seconds,
                   "step_over_unchunked": seconds / whole_s, "peak_mib": peak, "reference_peak_mib": reference_peak,
                   "peak_over_reference": None if peak is None or not reference_peak else peak / reference_peak}
            rows.append(row)
            ratio = "   n/a" if row["peak_over_reference"] is None else f"{row['peak_over_reference']:6.2f}"
            print(f"chunks  {name:<6} K=5 C={chunk:<3} step {1000 * seconds:8.1f} ms ({row['step_over_unchunked']:4.2f}x "
                  f"unchunked)  peak {_mib(peak)} MiB  learn2learn-style loop {_mib(reference_peak)} MiB  "
                  f"peak/loop {ratio}", flush=True)
    return rows


def memory_sweep(base, batch: TaskBatch, device: str, peaks: dict, steps_list=(1, 5, 10, 20)) -> list[dict]:
    rows = []
    for name in ("maml", "imaml"):
        for steps in steps_list:
            engine = build(copy.deepcopy(base), name, steps, RepeatBatch(batch), batch.tasks, device)
            engine.train_step()
            m = measure(engine.train_step, device)
            peak = peaks.get((name, steps), {}).get("ours")
            rows.append({"case": name, "inner_steps": steps, "peak_mib": peak, "seconds": m.seconds})
            print(f"memory  {name:<6} K={steps:<3} peak {_mib(peak)} MiB  step {m.seconds:6.2f} s", flush=True)
    return rows


def anil_breakdown(base, tasks_source: ClassificationTasks, batch: TaskBatch, repeats: int, device: str) -> dict:
    """Where an anil outer step's time goes: task sampling (Env.step), the same computation
    without Betty (plain functional code), and the Betty step; overhead = Betty − plain."""
    engine = build(copy.deepcopy(base), "anil", 1, tasks_source, batch.tasks, device)
    sample_s, _ = median_run(lambda: engine.env.step(), repeats, device)
    fixed = build(copy.deepcopy(base), "anil", 1, RepeatBatch(batch), batch.tasks, device)
    betty_s, _ = median_run(fixed.train_step, repeats, device)
    full_s, _ = median_run(engine.train_step, repeats, device)

    model = copy.deepcopy(base)
    learner = Learner(model, get_algorithm("anil"))
    optimizer = torch.optim.Adam(model.parameters(), lr=META_LR)

    def plain():
        theta = learner.meta_params()
        predict = learner.predictor(theta, batch.support.x)
        fast = learner.initial_fast_params(theta, batch.support.x, batch.support.y)
        grads = torch.autograd.grad(learner.inner_loss(predict, fast, batch.support.y, theta), list(fast.values()),
                                    create_graph=True)
        fast = {n: p - INNER_LR * g for (n, p), g in zip(fast.items(), grads)}
        query = learner.task_losses(learner.predictor(theta, batch.query.x)(fast), batch.query.y).mean()
        optimizer.zero_grad()
        query.backward()
        optimizer.step()
    plain_s, _ = median_run(plain, repeats, device)
    overhead = betty_s - plain_s
    result = {"sampling_s": sample_s, "plain_s": plain_s, "betty_step_s": betty_s, "step_with_sampling_s": full_s,
              "betty_overhead_s": overhead, "overhead_share": (overhead + sample_s) / (betty_s + sample_s)}
    print(f"anil breakdown: sampling {1000 * sample_s:.1f} ms, plain computation {1000 * plain_s:.1f} ms, "
          f"Betty step {1000 * betty_s:.1f} ms (bookkeeping {1000 * overhead:.1f} ms), step with sampling "
          f"{1000 * full_s:.1f} ms; sampling + bookkeeping = {100 * result['overhead_share']:.1f}% of the step",
          flush=True)
    return result


def bodies(batch: TaskBatch, repeats: int, device: str) -> list[dict]:
    """ResNet-18 (generic per-task path) against its plain forward+backward floor, and the
    generic path against the hand-written one on the same Conv4 (same parameters)."""
    rows = []
    for train_body in ("all", "bn"):
        for name in ("anil", "foanil"):
            torch.manual_seed(0)
            model = image_model("resnet18", 5).to(device)
            set_meta_trained(model, train_body)
            floor_model = copy.deepcopy(model)
            floor_opt = torch.optim.Adam([p for p in floor_model.parameters() if p.requires_grad])
            floor_s, _ = median_run(floor_step(floor_model, batch, floor_opt), repeats, device)
            split_s, _ = median_run(split_floor_step(floor_model, batch, floor_opt), repeats, device)
            engine = build(model, name, 1, RepeatBatch(batch), batch.tasks, device)
            ours_s, _ = median_run(engine.train_step, repeats, device)
            rows.append({"case": f"resnet18 {name} train-body {train_body}", "inner_steps": 1, "ours_s": ours_s,
                         "floor_s": floor_s, "split_floor_s": split_s, "ours_over_floor": ours_s / floor_s,
                         "ours_over_split_floor": ours_s / split_s})
            print(f"{rows[-1]['case']:<32} ours {1000 * ours_s:8.1f} ms  floor {1000 * floor_s:7.1f} ms  split floor "
                  f"{1000 * split_s:7.1f} ms  ours/floor {ours_s / floor_s:5.2f}  ours/split floor "
                  f"{ours_s / split_s:5.2f}", flush=True)
    for name in ("anil", "maml"):
        for steps in (1, 5):
            torch.manual_seed(0)
            hand = Conv4(5).to(device)
            generic = generic_path(copy.deepcopy(hand))
            hand_engine = build(hand, name, steps, RepeatBatch(batch), batch.tasks, device)
            generic_engine = build(generic, name, steps, RepeatBatch(batch), batch.tasks, device)
            hand_s, _ = median_run(hand_engine.train_step, repeats, device)
            generic_s, _ = median_run(generic_engine.train_step, repeats, device)
            rows.append({"case": f"conv4 {name} generic vs hand-written", "inner_steps": steps, "ours_s": generic_s,
                         "hand_written_s": hand_s, "generic_over_hand_written": generic_s / hand_s})
            print(f"conv4 {name:<5} K={steps}  hand-written {1000 * hand_s:8.1f} ms  generic (vmap) "
                  f"{1000 * generic_s:8.1f} ms  generic/hand-written {generic_s / hand_s:5.2f}", flush=True)
    return rows


def measure_peaks_in_subprocess(out: Path) -> dict:
    """Peak memory is measured in a child process whose large allocations go through mmap
    (so the resident set follows live tensors); that allocator setting slows every step, so
    timings are taken here, with the normal allocator."""
    target = out / "peaks.json"
    env = {**os.environ, MMAP_ENV: "65536"}
    if not sys.platform.startswith("linux"):
        return {}
    subprocess.run([sys.executable, *sys.argv, "--peaks-to", str(target)], env=env, check=True)
    return {(name, steps): entry for name, steps, entry in json.loads(target.read_text())}


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
        writer.writeheader()
        writer.writerows(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="data", help="folder holding omniglot-py/")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per case (after one warm-up)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="benchmarks/results", help="folder for the CSV files")
    p.add_argument("--only", choices=["steps", "memory", "breakdown", "bodies", "chunks", "peers"], default=None,
                   help="run one part (peers: learn2learn, higher and TorchOpt side by side, benchmarks/peers.py)")
    p.add_argument("--peaks-to", default=None, help=argparse.SUPPRESS)  # internal: the peak-memory pass
    args = p.parse_args()
    if args.repeats < 1:
        print("run_benchmarks.py: error: --repeats must be a positive integer", file=sys.stderr)
        return 2
    root = Path(args.data_root)
    if args.only == "peers":
        import peers
        return peers.main(["--data-root", str(root), "--repeats", str(args.repeats), "--out", args.out,
                           "--device", args.device])
    if not (root / "omniglot-py").is_dir():
        print(f"run_benchmarks.py: error: no Omniglot copy under {root}/omniglot-py: pass --data-root DIR "
              "(or run `make run` once, which downloads it to ./data)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    splits = load_omniglot(root, download=False)
    tasks = ClassificationTasks(splits["train"], 5, 1, 1, rotate=True)
    with seeded(0):
        batch = tasks.sample(32).to(args.device)
    base = Conv4(5).to(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} with {torch.get_num_threads()} threads, device {args.device}; "
          f"Omniglot Conv4-64, 5-way 1-shot, 1 query/class, meta-batch 32; median of {args.repeats} runs", flush=True)
    if args.peaks_to:
        peaks = peak_memory(base, batch, args.device, args.only)
        Path(args.peaks_to).write_text(json.dumps([[k[0], k[1], v] for k, v in peaks.items()]))
        return 0
    t0 = time.perf_counter()
    peaks = measure_peaks_in_subprocess(out) if args.only in (None, "steps", "memory", "chunks") else {}
    if args.only in (None, "steps"):
        write_csv(out / "step_costs.csv", step_costs(base, batch, args.repeats, args.device, peaks))
    if args.only in (None, "memory"):
        write_csv(out / "memory_sweep.csv", memory_sweep(base, batch, args.device, peaks))
    if args.only in (None, "breakdown"):
        write_csv(out / "anil_breakdown.csv", [anil_breakdown(base, tasks, batch, args.repeats, args.device)])
    if args.only in (None, "bodies"):
        write_csv(out / "bodies.csv", bodies(batch, args.repeats, args.device))
    if args.only in (None, "chunks"):
        write_csv(out / "chunks.csv", chunk_sweep(base, batch, args.repeats, args.device, peaks))
    print(f"wrote CSV files to {out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
