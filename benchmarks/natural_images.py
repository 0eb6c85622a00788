"""Step time and peak memory of the natural-image benchmarks at their defaults, on synthetic
images of the real size (this machine cannot download the data sets).

    python benchmarks/natural_images.py [--repeats 3] [--device cpu]

For each data set: its default algorithm setting (config.DATASET_DEFAULTS: network, ways,
shots, queries, meta-batch, inner steps and lr) with random pixels drawn per task, one outer
step through the Engine timed (median of ``--repeats`` after a warm-up) and its peak memory
measured in a child process whose large allocations are returned to the system on free (see
profiling.reexec_with_returnable_memory). ResNet-12 rows use the same settings with
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

from bilevel_anil.algorithms import get_algorithm  # noqa: E402
from bilevel_anil.config import DATASET_DEFAULTS  # noqa: E402
from bilevel_anil.data.episodes import EpisodeBatch, RepeatBatch, TaskSet  # noqa: E402
from bilevel_anil.data.natural import NATURAL_DATASETS  # noqa: E402
from bilevel_anil.engines import step_engine  # noqa: E402
from bilevel_anil.learner import Learner  # noqa: E402
from bilevel_anil.models import image_model, parameter_counts  # noqa: E402
from bilevel_anil.profiling import MMAP_ENV, measure  # noqa: E402

# (data set, algorithm, network): the data set's own network, and ResNet-12 where it is the usual one
CASES = [("mini-imagenet", "maml", None), ("mini-imagenet", "anil", "resnet12"), ("tiered-imagenet", "maml", None),
         ("cifar-fs", "maml", None), ("cifar-fs", "anil", "resnet12"), ("fc100", "anil", None)]


def synthetic_batch(dataset: str, tasks: int) -> EpisodeBatch:
    d, size = DATASET_DEFAULTS[dataset], NATURAL_DATASETS[dataset].image_size
    ways, shots, queries = d["ways"], d["shots"], d["queries"]
    labels = lambda k: torch.arange(ways).repeat_interleave(k).repeat(tasks, 1)
    return EpisodeBatch(TaskSet(torch.randn(tasks, ways * shots, 3, size, size), labels(shots)),
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--peak-of", type=int, default=None, help=argparse.SUPPRESS)  # internal: one case's peak
    args = p.parse_args()
    if args.peak_of is not None:
        engine = engine_for(*CASES[args.peak_of], args.device)[0]
        engine.train_step()
        print(json.dumps(measure(engine.train_step, args.device).peak_mib))
        return 0
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"device {args.device}; synthetic images; median of {args.repeats} outer steps after a warm-up")
    rows = []
    for i, (dataset, algorithm, arch) in enumerate(CASES):
        engine, arch, params, d = engine_for(dataset, algorithm, arch, args.device)
        engine.train_step()
        seconds = statistics.median(measure(engine.train_step, args.device).seconds for _ in range(args.repeats))
        child = subprocess.run([sys.executable, __file__, "--peak-of", str(i), "--device", args.device],
                               env={**os.environ, MMAP_ENV: "65536"}, capture_output=True, text=True, check=True)
        peak = json.loads(child.stdout.strip().splitlines()[-1])
        row = {"dataset": dataset, "algorithm": algorithm, "arch": arch, "parameters": params,
               "shape": f"{d['ways']}-way {d['shots']}-shot, {d['queries']} queries", "meta_batch": d["meta_batch"],
               "inner_steps": d["inner_steps"], "step_s": round(seconds, 3), "peak_mib": round(peak, 1)}
        rows.append(row)
        print(f"{dataset:<16} {algorithm:<5} {arch:<9} {params:>10,} params  {row['shape']}, meta-batch "
              f"{d['meta_batch']}, {d['inner_steps']} inner steps:  step {seconds:7.2f} s  peak {peak:8.1f} MiB",
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import csv
    with open(out / "natural_images.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
