"""Data parallelism over the tasks of a meta-batch, on ``torch.distributed`` (started by torchrun).

Every process draws the same meta-batch from the run's seed and keeps its own contiguous
share of the tasks; the meta-gradients are averaged over the processes before the outer
optimiser's step. So N processes take exactly the step one process takes over the same B
tasks, and a run's losses do not depend on N (up to float summation order). Validation and
test tasks are split the same way and their per-task scores gathered in order.

Gloo on the CPU, NCCL on CUDA. A process that cannot reach the others (one died, or a
collective timed out) raises ``PeerFailure``: one line, the checkpoints kept.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import PeerFailure, UsageError, first_line

T = TypeVar("T")
TIMEOUT_ENV = "BILEVEL_ANIL_DIST_TIMEOUT"  # seconds a collective waits for the other processes
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This process's contiguous block of ``n`` items (blocks differ in size by at most one)."""
        bounds = np.cumsum([0] + [len(b) for b in np.array_split(np.arange(n), self.world_size)])
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    @contextlib.contextmanager
    def stdout(self) -> Iterator[None]:
        """Print only from rank 0: the other processes' standard output goes nowhere."""
        if self.is_main:
            yield
            return
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield

    # collectives (no-ops in one process) ----------------------------------------------
    def average_(self, tensors: Iterable[Tensor]) -> None:
        """Replace each tensor by its mean over the processes (one all-reduce for all of them)."""
        tensors = list(tensors)
        if not self.active or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        _collective(lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
        flat /= self.world_size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def gather_blocks(self, block: Tensor, n: int) -> Tensor:
        """Concatenate the processes' blocks (``share(n)`` of a length-``n`` first dimension) in order."""
        if not self.active:
            return block
        sizes = [s.stop - s.start for s in (Group(r, self.world_size).share(n) for r in range(self.world_size))]
        padded = block.new_zeros((max(sizes), *block.shape[1:]))
        padded[:len(block)] = block
        parts = [torch.empty_like(padded) for _ in sizes]
        _collective(lambda: dist.all_gather(parts, padded))
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    def broadcast_(self, tensors: Iterable[Tensor]) -> None:
        """Overwrite the tensors with rank 0's."""
        if self.active:
            with torch.no_grad():  # parameters: a copy, not a step autograd should see
                for t in tensors:
                    _collective(lambda: dist.broadcast(t.detach(), 0))

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` on every process (e.g. the output folder's name)."""
        if not self.active:
            return value
        box = [value]
        _collective(lambda: dist.broadcast_object_list(box, 0))
        return box[0]

    def barrier(self) -> None:
        if self.active:
            _collective(dist.barrier)


def _collective(call: Callable[[], Any]) -> None:
    try:
        call()
    except (RuntimeError, dist.DistError) as exc:
        reason = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc))  # without gloo's source location
        reason = reason.split(". ")[0][:160] or type(exc).__name__
        raise PeerFailure(f"lost contact with the other processes of this run ({reason}); this process stops "
                          "too: the last checkpoint is intact, restart all processes with ⟨resume⟩") from None


def check_task_split(meta_batch: int, task_chunk: Optional[int], processes: int) -> None:
    """The meta-batch must split evenly over the processes, and each process's share into chunks."""
    if meta_batch % processes:
        raise UsageError(f"⟨meta_batch⟩ {meta_batch} does not split evenly over {processes} processes: "
                         f"use a multiple of {processes} (or another --nproc-per-node)")
    share = meta_batch // processes
    if task_chunk is not None and share % task_chunk:
        divisors = ", ".join(str(d) for d in range(1, share + 1) if share % d == 0)
        where = f"⟨meta_batch⟩ {meta_batch}" + (f" over {processes} processes" if processes > 1 else "")
        raise UsageError(f"⟨task_chunk⟩ {task_chunk} does not divide the {share} tasks of each process "
                         f"({where}): choose one of {divisors}")


_GROUP = Group()


def current() -> Group:
    """The group set up by ``init_from_environment`` (one process until then)."""
    return _GROUP


MAX_TIMEOUT_S = 10 ** 7  # about 116 days: datetime.timedelta and the backends take no more


def collective_timeout() -> float:
    """``BILEVEL_ANIL_DIST_TIMEOUT`` (default 300 s): a number of seconds in (0, 10**7]."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value <= MAX_TIMEOUT_S):  # also false for nan
        raise UsageError(f"{TIMEOUT_ENV} must be a number of seconds above 0 and at most {MAX_TIMEOUT_S}, got {text!r}")
    return value


def _environment_integer(name: str, default: Optional[str], smallest: int) -> int:
    """An integer variable that torchrun sets, checked: one line when it is not one."""
    text = os.environ.get(name, default)
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < smallest:
        raise UsageError(f"{name}={text!r} is not an integer of at least {smallest}: start the processes with "
                         f"torchrun (which sets it), or unset it")
    return value


def init_from_environment(device: str) -> Group:
    """Join the processes torchrun started (``WORLD_SIZE`` > 1 in the environment): gloo for
    the CPU, NCCL for CUDA, where each process takes the GPU of its ``LOCAL_RANK``. Without
    torchrun, a one-process group. Called once per process."""
    global _GROUP
    timeout = collective_timeout()  # checked in one process too: a bad value is bad input anywhere
    world = _environment_integer("WORLD_SIZE", "1", 1)
    if world <= 1:
        return _GROUP
    if "RANK" not in os.environ:
        raise UsageError(f"WORLD_SIZE is {world} but RANK is not set: start the processes with torchrun "
                         "(which sets both), or unset WORLD_SIZE")
    rank, local_rank = _environment_integer("RANK", None, 0), _environment_integer("LOCAL_RANK", "0", 0)
    if rank >= world:
        raise UsageError(f"RANK {rank} is not below WORLD_SIZE {world}: start the processes with torchrun")
    cuda = device.startswith("cuda")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"process {rank} has LOCAL_RANK {local_rank} but this machine has "
                             f"{torch.cuda.device_count()} GPU(s): start at most that many processes per node")
        torch.cuda.set_device(local_rank)
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing and not dist.is_initialized():
        raise UsageError(f"WORLD_SIZE is {world} but {' and '.join(missing)} not set: start the processes with "
                         "torchrun (which sets them), or unset WORLD_SIZE")
    if not dist.is_initialized():
        _collective(lambda: dist.init_process_group("nccl" if cuda else "gloo",
                                                    timeout=datetime.timedelta(seconds=timeout)))
    _GROUP = Group(rank, world, local_rank)
    return _GROUP


def shutdown() -> None:
    """Leave the process group (at the end of a run)."""
    global _GROUP
    if dist.is_initialized():
        # objects of the run that reference the process group sit in reference cycles (Betty's
        # engine and problems): freed now, not at interpreter exit after the group is gone,
        # where one of them aborted a process ("terminate called without an active exception")
        gc.collect()
        dist.destroy_process_group()
    _GROUP = Group()
