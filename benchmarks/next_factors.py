"""Candidates for the next speed factor on the CPU, measured side by side in one process.

    python benchmarks/next_factors.py --data-root ../shared/data [--repeats 5]

1. The floor, Conv4 (20 ways) forward and backward over 640 images of 28x28 (the 20-way
   preset's meta-batch): contiguous against ``channels_last`` tensors, with 2 and 1 threads,
   and ``torch.compile`` (its first call's compile time stated).
2. This package's outer step (anil and maml, 5 inner steps; Omniglot 5w1s meta-batch 32 and
   20w1s meta-batch 16) with its shared-weight convolutions run on ``channels_last`` inputs,
   against the step as it is; for anil also with a per-task BatchNorm that keeps the layout.

Each figure is the median of ``--repeats`` runs after a warm-up, under the package's allocator
setting. Nothing here changes the package: it tells which change would pay.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bilevel_anil.models.functional as TF  # noqa: E402
from bilevel_anil.allocator import keep_freed_memory  # noqa: E402
from bilevel_anil.models import Conv4  # noqa: E402

import peers  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def floor(repeats: int) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(640, 1, 28, 28), torch.randint(0, 20, (640,))
    threads = torch.get_num_threads()
    for n in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(n)
        for layout in ("contiguous", "channels_last"):
            model, inputs = Conv4(20), x
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
                inputs = x.contiguous(memory_format=torch.channels_last)

            def step():
                model.zero_grad()
                F.cross_entropy(model(inputs), y).backward()
            print(f"floor, {n} thread(s), {layout:<14} {median_time(step, repeats):.4f} s", flush=True)
    torch.set_num_threads(threads)
    model = Conv4(20)
    try:
        compiled = torch.compile(model)

        def step():
            model.zero_grad()
            F.cross_entropy(compiled(x), y).backward()
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        print(f"floor, {threads} thread(s), torch.compile  {median_time(step, repeats):.4f} s "
              f"(first call, compiling: {first:.1f} s)", flush=True)
    except Exception as exc:  # no C++ compiler, an unsupported op: say so
        print(f"floor, torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")


def package_step(data_root: str, repeats: int) -> None:
    plain = TF.conv2d

    def channels_last_conv(x, weight, bias, padding):
        if weight.dim() != 4:
            return plain(x, weight, bias, padding)
        tasks, shots = x.shape[:2]
        flat = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        return F.conv2d(flat, weight, bias, padding=padding).contiguous().unflatten(0, (tasks, shots))

    plain_bn = TF.task_batch_norm

    def channels_last_batch_norm(x, weight, bias, eps):
        """Per-task statistics over (n, H, W) without the [n, B·C, H, W] transpose, so a
        channels_last input stays channels_last (shared weights, as ANIL's body has)."""
        if weight.dim() != 1:
            return plain_bn(x, weight, bias, eps)
        var, mean = torch.var_mean(x, dim=(1, 3, 4), unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps) * weight.view(1, 1, -1, 1, 1) + bias.view(1, 1, -1, 1, 1)

    for label, build, algos, steps, lr in peers.cases(data_root):
        if "K=5" not in label or label.startswith("regression"):
            continue
        for algo in ("anil", "maml"):
            try:
                TF.conv2d = plain
                base = peers.time_case(build, "bilevel_anil", algo, steps, lr, False, repeats)
                TF.conv2d = channels_last_conv
                other = peers.time_case(build, "bilevel_anil", algo, steps, lr, False, repeats)
                line = f"{label} {algo}: as is {base:.4f} s, channels_last convolutions {other:.4f} s " \
                       f"({base / other:.2f}x)"
                if algo == "anil":  # the body's weights are shared: the layout can be kept throughout
                    TF.task_batch_norm = channels_last_batch_norm
                    kept = peers.time_case(build, "bilevel_anil", algo, steps, lr, False, repeats)
                    line += f", and BatchNorm keeping the layout {kept:.4f} s ({base / kept:.2f}x)"
            finally:
                TF.conv2d, TF.task_batch_norm = plain, plain_bn
            print(line, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True, help="folder holding omniglot-py/")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if args.repeats < 1 or not (Path(args.data_root) / "omniglot-py").is_dir():
        print("next_factors.py: error: --repeats must be positive and --data-root must hold omniglot-py/",
              file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    keep_freed_memory()
    floor(args.repeats)
    package_step(args.data_root, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
