"""The training loop: outer steps of an engine until the step count, the time budget, a
callback or Ctrl-C stops them; validation, ``best.pt``/``last.pt`` checkpoints and
``metrics.csv`` on the way; resuming from ``last.pt``. The one loop of ``MetaLearner.fit``
(and so of ``run.py`` and the pipeline); the engine only orders each step."""
from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..core.evaluation import Interval
from ..engines import MetaEngine
from ..errors import Interrupted, TrainingDiverged, UsageError
from . import checkpoint
from .budget import Budget
from .callbacks import Callback, StepInfo
from .metrics_log import MetricsLog
from .schema import LearnerRecord, RunCheckpoint, write_run

# set to a step number, the process kills itself (SIGKILL) just after writing last.pt at that
# step: how the tests reach the moment between a checkpoint and what follows it
KILL_AFTER_CHECKPOINT = "BILEVEL_ANIL_TEST_KILL_AFTER_CHECKPOINT"


class _StopRequest:
    requested = False


@contextlib.contextmanager
def stop_on_sigint():
    """While active, a first Ctrl-C (SIGINT) only sets ``requested`` (the loop stops after the
    outer step in progress, with consistent state to save); a second one interrupts at once."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.requested:
            raise KeyboardInterrupt
        request.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class LoopSettings:
    """How long to train and how often to validate, and where the run's files go."""

    iterations: int
    val_every: int
    out_dir: Path
    higher_is_better: bool = True  # accuracy; False for a loss such as MSE
    progress: Optional[bool] = None  # None: show the bar only on a terminal
    time_budget: Optional[float] = None  # stop after this many seconds of outer steps (then validate)
    tensorboard: bool = False  # TensorBoard events beside metrics.csv (which is always written)


class TrainingLoop:
    """Outer steps of ``engine`` from a start step to ``settings.iterations``.

    ``validate`` returns the validation ``Interval`` (None: no validation; ``last.pt`` is
    still written every ``val_every`` steps); ``record`` (how to rebuild the learner) and
    ``run`` (a ``run.py`` run's settings) go into every checkpoint; ``callbacks`` are called after each outer step
    (``bilevel_anil.training.callbacks``) and may stop the run.
    """

    def __init__(self, engine: MetaEngine, settings: LoopSettings, validate: Optional[Callable[[], Interval]],
                 record: LearnerRecord, run: Optional[dict] = None, callbacks: Sequence[Callback] = ()):
        self.engine, self.settings = engine, settings
        self.group = engine.group
        self.validate_fn, self.record, self.run_settings = validate, record, run or {}
        self.callbacks = tuple(callbacks)
        self.best: Optional[dict[str, Any]] = None
        self.last_train_loss: Optional[float] = None
        self.train_seconds, self.steps_done = 0.0, 0
        self._saved_step: Optional[int] = None  # of the last last.pt on disk (for a failed write's line)

    def _validate(self) -> Optional[dict[str, float]]:
        """The validation record (None without validation), in evaluation mode."""
        if self.validate_fn is None:
            return None
        self.engine.eval()
        try:
            interval = self.validate_fn()
            return {"val_score": interval.mean, "val_ci95": interval.ci95}
        finally:
            self.engine.train()

    def _callbacks_stop(self, step: int, stats: dict[str, float], val: Optional[dict[str, float]],
                        train_time: float) -> bool:
        """Call every callback with this step's figures; True when any of them, in any process,
        asks to stop."""
        if not self.callbacks:
            return False
        info = StepInfo(step=step, steps=self.settings.iterations, train_loss=stats["loss"],
                        train_score=stats.get("score"), val_score=None if val is None else val["val_score"],
                        val_ci95=None if val is None else val["val_ci95"],
                        higher_is_better=self.settings.higher_is_better, train_seconds=train_time)
        stop = False
        for callback in self.callbacks:
            answer = callback(info)
            # True stops, None or False goes on; anything else (a logger's dict, "no") is a mistake,
            # not a request to stop
            if answer is not None and not isinstance(answer, bool):
                raise TypeError(f"a callback returned {type(answer).__name__} {answer!r:.40}: return True to stop the "
                                "fit, or None (or False) to go on")
            stop = answer is True or stop
        if self.group.world_size > 1:
            _, stop = self._agree({}, stop)
        return stop

    # persistence -----------------------------------------------------------------------
    @property
    def _sampler_generator(self) -> Optional[torch.Generator]:
        generator = getattr(self.engine.env.sampler, "generator", None)
        return generator if isinstance(generator, torch.Generator) else None

    def _checkpoint(self, step: int) -> RunCheckpoint:
        upper = self.engine.upper
        return RunCheckpoint(
            learner=self.record, step=step, model=upper.module.state_dict(), optimizer=upper.optimizer.state_dict(),
            scheduler=None if upper.outer_schedule is None else upper.outer_schedule.state_dict(), best=self.best,
            rng={"python": random.getstate(), "numpy": _numpy_state_to_plain(np.random.get_state()),
                 "torch": torch.get_rng_state(),
                 # a sampler seeded by its own torch.Generator (the Python API's) draws from it alone
                 "sampler": None if self._sampler_generator is None else self._sampler_generator.get_state()},
            run=self.run_settings)

    def restore(self, saved: RunCheckpoint) -> int:
        """Continue from a ``last.pt`` (read with ``resume=True``); returns the step it was saved at."""
        upper = self.engine.upper
        upper.module.load_state_dict(saved.model)
        upper.optimizer.load_state_dict(saved.optimizer)
        if upper.outer_schedule is not None:
            upper.outer_schedule.load_state_dict(saved.scheduler)
        self.best = saved.best
        random.setstate(saved.rng["python"])
        np.random.set_state(_numpy_state_from_plain(saved.rng["numpy"]))
        torch.set_rng_state(saved.rng["torch"])
        if self._sampler_generator is not None and saved.rng.get("sampler") is not None:
            self._sampler_generator.set_state(saved.rng["sampler"])
        self._saved_step = saved.step
        return saved.step

    def _save(self, name: str, step: int) -> None:
        if self.group.is_main:
            try:
                write_run(self.settings.out_dir / name, self._checkpoint(step))
            except checkpoint.WriteFailed as exc:
                if self._saved_step is None:
                    raise UsageError(f"{exc}; no checkpoint was written before it: free space and start again") from None
                raise UsageError(f"{exc}; the last checkpoint (last.pt, step {self._saved_step}) is intact: free space "
                                 "and continue with ⟨resume⟩") from None
            if name == "last.pt":
                self._saved_step = step
            if name == "last.pt" and os.environ.get(KILL_AFTER_CHECKPOINT) == str(step):
                os.kill(os.getpid(), signal.SIGKILL)  # the tests' kill point: just after last.pt is in place

    def _after_step(self, step: int, stats: dict[str, float], row: dict[str, Any], out_of_time: bool,
                    train_time: float, log: MetricsLog, bar: tqdm) -> bool:
        """Validation, callbacks, the metrics row and the checkpoints of one outer step; True
        when the run ends here (out of time, or a callback asked to stop)."""
        s = self.settings
        checkpoint_now = step % s.val_every == 0 or step == s.iterations or out_of_time
        val = self._validate() if checkpoint_now else None
        finish = out_of_time
        if self._callbacks_stop(step, stats, val, train_time):  # then validate and checkpoint here
            finish = True
            if not checkpoint_now:
                checkpoint_now, val = True, self._validate()
        if not checkpoint_now:
            log.write(row)
            return finish
        if val is not None:
            row.update(val)
        # the row is on disk before the checkpoint that covers it: a kill between the two leaves
        # a row after the previous last.pt, which a resumed run drops and redoes
        log.write(row, durable=True)
        if val is not None and self._better(val["val_score"]):
            self.best = {"step": step, **val}
            self._save("best.pt", step)
        self._save("last.pt", step)
        if bar.disable and self.group.is_main:
            shown = "" if val is None else f"  val {val['val_score']:.4f} ± {val['val_ci95']:.4f}"
            print(f"step {step}/{s.iterations}  loss {stats['loss']:.4f}{shown}  {row['steps_per_s']:.2f} steps/s",
                  flush=True)
        return finish

    def _agree(self, stats: dict[str, float], *flags: bool) -> tuple:
        """``stats`` averaged over the processes, then each flag, true if it is true in any of them."""
        keys = sorted(stats)
        shared = torch.tensor([stats[k] for k in keys] + [float(f) for f in flags], dtype=torch.float64)
        self.group.average_([shared])
        values = shared.tolist()
        return (dict(zip(keys, values[:len(keys)])), *(v > 0 for v in values[len(keys):]))

    def _better(self, score: float) -> bool:
        if self.best is None:
            return True
        return score > self.best["val_score"] if self.settings.higher_is_better else score < self.best["val_score"]

    # the loop --------------------------------------------------------------------------
    def run(self, start_step: int = 0) -> Optional[dict[str, Any]]:
        """Train from ``start_step`` to ``iterations``; returns the best validation record."""
        s, main = self.settings, self.group.is_main
        s.out_dir.mkdir(parents=True, exist_ok=True)
        self.group.broadcast_(self.engine.upper.trainable_parameters())  # every process starts from rank 0's θ
        # rows written after last.pt are redone on --resume; only rank 0 writes files
        with MetricsLog(s.out_dir, start_step, s.tensorboard, enabled=main) as log, stop_on_sigint() as stop:
            show = s.progress if main else False  # None: tqdm decides (a bar only on a terminal)
            bar = tqdm(total=s.iterations, initial=start_step, disable=None if show is None else not show,
                       unit="step", dynamic_ncols=True)
            started, train_time, done = time.perf_counter(), 0.0, 0
            budget = Budget(s.time_budget)  # over the seconds of outer steps (validation excluded)
            self.engine.train()
            for step in range(start_step + 1, s.iterations + 1):
                t0 = time.perf_counter()
                stats = self.engine.train_step(check_finite=False)
                train_time += time.perf_counter() - t0
                done += 1
                # one all-reduce: the loss and score over all B tasks, and whether any process is
                # out of time or asked to stop (so that all of them stop together)
                stats, out_of_time, stop_requested = self._agree(
                    stats, budget.over(spent=train_time), stop.requested)
                row = {"step": step, "train_loss": stats["loss"], "train_score": stats.get("score", ""),
                       "val_score": "", "val_ci95": "", "elapsed_s": round(time.perf_counter() - started, 3),
                       "train_s": round(train_time, 3), "steps_per_s": round(done / train_time, 3)}
                finish = self._after_step(step, stats, row, out_of_time, train_time, log, bar)
                if not math.isfinite(stats["loss"]):
                    bar.close()
                    kept = "no checkpoint was written yet" if self.best is None else \
                        f"the checkpoints in {s.out_dir} are from before it"
                    raise TrainingDiverged(f"meta-training diverged at step {step} (non-finite query loss); {kept}: "
                                           "lower ⟨inner_lr⟩ or ⟨meta_lr⟩")
                bar.set_postfix(loss=f"{stats['loss']:.3f}", score=f"{stats.get('score', float('nan')):.3f}",
                                val="" if self.best is None else f"{self.best['val_score']:.3f}", refresh=False)
                bar.update(1)
                if stop_requested:
                    bar.close()
                    self._save("last.pt", step)
                    raise Interrupted(f"interrupted after step {step}; {s.out_dir / 'last.pt'} holds it: continue "
                                      f"with ⟨resume⟩ ⟨out⟩={s.out_dir}")
                if finish:
                    break
            bar.close()
        self.group.barrier()  # best.pt is on disk for every process
        self.train_seconds, self.steps_done = train_time, done
        self.last_train_loss = stats["loss"] if done else None
        return self.best


def _numpy_state_to_plain(state: tuple) -> tuple:
    """numpy's legacy random state with its key array as a tensor, so that the checkpoint holds
    only tensors and plain values (read with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_state_from_plain(state: tuple) -> tuple:
    """The inverse of ``_numpy_state_to_plain``; also takes the ndarray of older checkpoints."""
    name, keys, pos, has_gauss, cached = state
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    return (name, keys.astype(np.uint32), pos, has_gauss, cached)
