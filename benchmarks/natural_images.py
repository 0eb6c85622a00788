"""Step time and peak memory of the natural-image benchmarks at their defaults, on synthetic
images of the real size (this machine cannot download the data sets).

    python benchmarks/natural_images.py [--repeats 3] [--device cpu]

For each data set: its default algorithm setting (the data set's spec: network, ways,
shots, queries, meta-batch, inner steps and lr) with random pixels drawn per task, one outer
step through the Engine timed (median of ``--repeats`` after a warm-up) and its peak memory
measured in a second child process whose large allocations are returned to the system on
free (see profiling.reexec_with_returnable_memory); every case runs in its own processes. ResNet-12 rows use the same settings with
``--arch resnet12``. Results: printed and written to benchmarks/results/natural_images.csv.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bilevel_anil.core.options import get_algorithm
from bilevel_anil.recipes.run_config import DATASET_DEFAULTS
from bilevel_anil.core.tasks import RepeatBatch, TaskBatch, TaskSet
from bilevel_anil.data.natural import NATURAL_DATASETS
from bilevel_anil.engines import step_engine
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import image_model, parameter_counts
from bilevel_anil.training.profiling import MMAP_ENV, measure
from run_benchmarks import write_csv  # noqa: E402

# (data set, algorithm, network): the data set's own network, and ResNet-12 where it is the usual one
CASES = [("mini-imagenet", "maml", None), ("mini-imagenet", "anil", "resnet12"), ("tiered-imagenet", "maml", None),
         ("cifar-fs", "maml", None), ("cifar-fs", "anil", "resnet12"), ("fc100", "anil", None)]


def synthetic_batch(dataset: str, tasks: int) -> TaskBatch:
    d, size = DATASET_DEFAULTS[dataset], NATURAL_DATASETS[dataset].image_size
    ways, shots, queries = d["ways"], d["shots"], d["queries"]
    def labels(k: int) -> torch.Tensor:
        return torch.arange(ways).repeat_interleave(k).repeat(tasks, 1)

    return TaskBatch(TaskSet(torch.randn(tasks, ways * shots, 3, size, size), labels(shots)),
                        TaskSet(torch.randn(tasks, ways * queries, 3, size, size), labels(queries)))


def engine_for(dataset: str, algorithm: str, arch, device: str):
    d = DATASET_DEFAULTS[dataset]
    arch = arch or d["arch"]
    torch.manual_seed(0)
    model = image_model(arch, d["ways"], in_channels=3, image_size=NATURAL_DATASETS[dataset].image_size).to(device)
    batch = synthetic_batch(dataset, d["meta_batch"]).to(device)
    engine = step_engine(Learner(model, get_algorithm(algorithm)), RepeatBatch(batch), d["meta_batch"],
                         d["inner_steps"], d["inner_lr"], torch.optim.Adam(model.parameters(), lr=d["meta_lr"]),
                         device=device)
    return engine, arch, parameter_counts(model)["total"], d


def one_case(index: int, repeats: int, device: str) -> dict:
    """Time (``repeats`` > 0) or peak memory (``repeats`` == 0) of one case, in this process."""
    engine, arch, params, d = engine_for(*CASES[index], device)
    engine.train_step()  # warm-up
    if repeats == 0:
        return {"peak_mib": measure(engine.train_step, device).peak_mib}
    seconds = statistics.median(measure(engine.train_step, device).seconds for _ in range(repeats))
    return {"arch": arch, "parameters": params, "step_s": seconds}


def in_child(index: int, repeats: int, device: str, env: dict) -> dict:
    """Each case runs in its own process (a ResNet-12 step at 84x84 holds many GiB), the peak
    pass with large allocations returned to the system on free."""
    done = subprocess.run([sys.executable, __file__, "--case", str(index), "--repeats", str(repeats),
                           "--device", device], env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["killed"])[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--only", default=None, help="comma-separated case numbers (0-based) to run")
    p.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)  # internal: one case in a child
    args = p.parse_args()
    if args.case is not None:
        print(json.dumps(one_case(args.case, args.repeats, args.device)))
        return 0
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"device {args.device}; synthetic images; median of {args.repeats} outer steps after a warm-up")
    rows = []
    chosen = range(len(CASES)) if args.only is None else [int(i) for i in args.only.split(",")]
    for i in chosen:
        dataset, algorithm, arch = CASES[i]
        d = DATASET_DEFAULTS[dataset]
        timing = in_child(i, args.repeats, args.device, {})
        peak = in_child(i, 0, args.device, {MMAP_ENV: "65536"})
        row = {"dataset": dataset, "algorithm": algorithm, "arch": timing.get("arch", arch or d["arch"]),
               "parameters": timing.get("parameters"),
               "shape": f"{d['ways']}-way {d['shots']}-shot, {d['queries']} queries", "meta_batch": d["meta_batch"],
               "inner_steps": d["inner_steps"], "step_s": timing.get("step_s"), "peak_mib": peak.get("peak_mib"),
               "error": timing.get("error") or peak.get("error") or ""}
        rows.append(row)
        step = "failed" if row["step_s"] is None else f"{row['step_s']:7.2f} s"
        mib = "failed" if row["peak_mib"] is None else f"{row['peak_mib']:8.1f} MiB"
        print(f"{dataset:<16} {algorithm:<5} {row['arch']:<9} {row['shape']}, meta-batch {d['meta_batch']}, "
              f"{d['inner_steps']} inner steps:  step {step}  peak {mib}  {row['error']}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "natural_images.csv", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
