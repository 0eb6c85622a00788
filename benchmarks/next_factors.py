"""Candidates for the next speed factor on the CPU, measured side by side in one process.

    python benchmarks/next_factors.py --data-root ../shared/data [--repeats 5]

1. The floor, Conv4 (20 ways) forward and backward over 640 images of 28x28 (the 20-way
   preset's meta-batch): contiguous against ``channels_last`` tensors, with 2 and 1 threads,
   and ``torch.compile`` (its first call's compile time stated).
2. This package's outer step (anil and maml; the peers' cases: Omniglot 5w1s meta-batch 32 at
   K = 1 and 5, 20w1s meta-batch 16 at K = 5) with Conv4's task-channel layout, against the
   forward it replaced (a transpose around every BatchNorm) and against the same layout in
   ``channels_last`` memory format, and the two first forwards' meta-gradient agreement.
3. A profile of one maml 20-way step with each of the first two forwards: the time in copies
   and in BatchNorm's double backward. (Up to commit cfeae2e this part measured ``channels_last`` convolutions and a
   layout-keeping elementwise BatchNorm in the previous forward; neither paid.)

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
from bilevel_anil.training.allocator import keep_freed_memory
from bilevel_anil.models import Conv4

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


def previous_body_forward(self, params, x):
    """Conv4's task-batched forward before the task-channel layout (to commit cfeae2e): each
    layer ran on ``[B, n, C, H, W]``, and every BatchNorm transposed its input to
    ``[n, B*C, H, W]`` and back (the conversions cost copies in the forward and the backward)."""
    tasks, shots = x.shape[:2]
    h = x
    for i, block in enumerate(self.body[:-1]):
        p = f"body.{i}."
        w, b = params[p + "conv.weight"], params[p + "conv.bias"]
        if w.dim() == 4:
            h = F.conv2d(h.flatten(0, 1), w, b, padding=1).unflatten(0, (tasks, shots))
        elif w.shape[2] == 1:
            height = h.shape[-2]
            patches = F.unfold(h.flatten(0, 1), w.shape[-2:], padding=1).unflatten(0, (tasks, shots))
            h = (torch.matmul(w.flatten(2).unsqueeze(1), patches) + b[:, None, :, None]).unflatten(-1, (height, -1))
        else:
            grouped = h.transpose(0, 1).flatten(1, 2)
            h = F.conv2d(grouped, w.flatten(0, 1), b.flatten(), padding=1, groups=tasks)
            h = h.unflatten(1, (tasks, -1)).transpose(0, 1)
        bw, bb = params[p + "bn.weight"], params[p + "bn.bias"]
        channels = h.shape[2]
        flat = h.transpose(0, 1).flatten(1, 2)
        bw = bw.flatten() if bw.dim() == 2 else bw.repeat(tasks)
        bb = bb.flatten() if bb.dim() == 2 else bb.repeat(tasks)
        h = F.batch_norm(flat, None, None, bw, bb, training=True, eps=block.bn.eps)
        h = h.unflatten(1, (tasks, channels)).transpose(0, 1)
        h = F.max_pool2d(F.relu(h.flatten(0, 1)), 2).unflatten(0, (tasks, shots))
    return h.flatten(2)


_PACKAGE_FORWARD = Conv4.body_forward  # the package's own, before any variant replaces it


def channels_last_body_forward(self, params, x):
    """The package's task-channel forward (Conv4.body_forward itself) with each convolution's
    output turned into ``channels_last`` memory format (BatchNorm, ReLU and pooling keep it)."""
    plain = TF.conv2d
    TF.conv2d = lambda *args, **kwargs: plain(*args, **kwargs).contiguous(memory_format=torch.channels_last)
    try:
        return _PACKAGE_FORWARD(self, params, x)
    finally:
        TF.conv2d = plain


def package_step(data_root: str, repeats: int) -> None:
    """The outer step with Conv4's task-channel layout (the package) against the previous
    forward, side by side, and the two meta-gradients' relative difference (float64)."""
    current = Conv4.body_forward
    for label, build, algos, steps, lr in peers.cases(data_root):
        if label.startswith("regression"):
            continue
        for algo in ("anil", "maml"):
            times = {}
            for name, forward in (("previous", previous_body_forward), ("task-channel", current),
                                  ("channels_last", channels_last_body_forward)):
                try:
                    Conv4.body_forward = forward
                    times[name] = peers.time_case(build, "bilevel_anil", algo, steps, lr, False, repeats)
                finally:
                    Conv4.body_forward = current
            print(f"{label} {algo}: previous forward {times['previous']:.4f} s, task-channel layout "
                  f"{times['task-channel']:.4f} s ({times['previous'] / times['task-channel']:.2f}x), "
                  f"the same in channels_last {times['channels_last']:.4f} s "
                  f"({times['previous'] / times['channels_last']:.2f}x), "
                  f"gradients differ by {gradient_difference(build, algo, steps, lr):.1e}", flush=True)


def gradient_difference(build, algo: str, steps: int, lr: float) -> float:
    """Relative L2 difference of the two forwards' meta-gradients from the same θ, float64."""
    import copy

    model, batch = build()
    model = model.double()
    batch = peers.TaskBatch.of(*(t.double() if t.is_floating_point() else t
                                 for t in (batch.support.x, batch.support.y, batch.query.x, batch.query.y)))
    grads, current = [], Conv4.body_forward
    for forward in (previous_body_forward, current):
        try:
            Conv4.body_forward = forward
            engine = peers.ours_engine(copy.deepcopy(model), algo, steps, lr, batch, False)
            engine.train_step()
            grads.append([g.detach().clone() for g in engine.upper.last_grads])
        finally:
            Conv4.body_forward = current
    return peers.relative_error(grads[0], grads[1])


def profile_step(data_root: str) -> None:
    """Where one maml 20-way step goes (``torch.profiler``, one step after two warm-ups), with
    the previous forward and with the task-channel layout: the copies (``aten::copy_``), and
    BatchNorm's double backward and the elementwise products it is made of."""
    from torch.profiler import profile

    build = [c for c in peers.cases(data_root) if c[0].startswith("omniglot 20w")][0][1]
    current = Conv4.body_forward
    for name, forward in (("previous forward", previous_body_forward), ("task-channel layout", current)):
        try:
            Conv4.body_forward = forward
            model, batch = build()
            step = peers.ours_engine(model, "maml", 5, 0.1, batch, False).train_step
            step()
            step()
            with profile() as prof:
                step()
        finally:
            Conv4.body_forward = current
        events = {e.key: e for e in prof.key_averages()}
        total = sum(e.self_cpu_time_total for e in events.values()) / 1e6
        cell = lambda key, attr: getattr(events[key], attr) / 1e6 if key in events else 0.0  # noqa: E731
        print(f"profile, maml 20w1s K=5, {name}: step {total:.2f} s of CPU time; copies "
              f"{cell('aten::copy_', 'self_cpu_time_total'):.3f} s; BatchNorm double backward "
              f"{cell('NativeBatchNormBackwardBackward0', 'cpu_time_total'):.2f} s "
              f"(elementwise products in the step: {cell('aten::mul', 'self_cpu_time_total'):.2f} s)", flush=True)


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
    profile_step(args.data_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
