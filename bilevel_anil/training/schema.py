"""The checkpoint schema: what each file of the package holds, as typed records with one
writer and one reader per kind, and a format number.

* ``RunCheckpoint``: a learner's weights and everything needed to go on using it
  (``LearnerRecord``), written by ``MetaLearner.save`` and by the training loop (``best.pt``,
  ``last.pt``: then with the outer optimiser, random states and best validation too), and by
  ``run.py`` with its run settings (``run``).
* ``BodyFile``: a body pretrained as a classifier (``run.py pretrain-body``).

Format 2 (this one) stores each record's fields under its own keys, the learner's as one dict.
Format 1 (the releases before it) stored a flat dict whose keys had moved over time; such a
file is read once, here (``_upgrade_run``, ``_upgrade_body``), and every reader gets the
same record. Reading never runs code from a file (``checkpoint.read``).
"""
from __future__ import annotations

import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from torch import Tensor

from ..errors import UsageError
from . import checkpoint

FORMAT = 2
RUN_KIND = "bilevel_anil-run"
BODY_KIND = "bilevel_anil-body"  # also format 1's "kind" of a pretrain-body file


@dataclass
class LearnerRecord:
    """How to rebuild a ``MetaLearner``: its algorithm, inner loop, head and network."""

    algorithm: str
    grad: str  # "unrolled" or "implicit"
    first_order: bool
    loss: str  # a name of LOSSES, or the user's function's name (load then asks for it)
    arch: dict  # the package network's build arguments, or {"name": "custom", "class": ...}
    inner_lr: float
    inner_steps: int
    test_inner_steps: int
    lam: float  # λ of meta-training (imaml/ianil)
    test_lam: float  # λ of test-time adaptation
    inner_optimizer: str
    inner_proximal: str
    hypergrad: dict  # HypergradConfig's fields
    head_init: str
    head_module: Optional[str]
    head_names: list
    adapted_names: Optional[list]  # None: the algorithm's choice (files of format 1)
    frozen: list  # parameters that do not require a gradient
    bn_mode: str = "batch"
    meta_lr: float = 1e-3
    inner_batch: Optional[int] = None
    task_chunk: Optional[int] = None

    # what a resumed fit must share with the fit it continues
    RESUME: ClassVar[tuple[str, ...]] = ("algorithm", "grad", "first_order", "loss", "inner_lr", "inner_steps", "lam",
                                         "inner_optimizer", "inner_proximal", "head_names", "adapted_names",
                                         "head_init")


@dataclass
class RunCheckpoint:
    """A learner's weights with its ``LearnerRecord``; a training loop's checkpoint adds what
    resuming needs (``optimizer``, ``scheduler``, ``best``, ``rng``); ``run`` holds the
    settings of a ``run.py`` run (``config``, ``pretrained``, ``train_body``, ``normalization``)."""

    learner: LearnerRecord
    step: int
    model: dict
    optimizer: Optional[dict] = None
    scheduler: Optional[dict] = None
    best: Optional[dict] = None
    rng: Optional[dict] = None
    run: dict = field(default_factory=dict)

    @property
    def resumable(self) -> bool:
        return isinstance(self.optimizer, dict) and isinstance(self.rng, dict)


@dataclass
class BodyFile:
    """A body pretrained as a classifier: its weights and how it was chosen."""

    arch: dict
    body: dict
    best_epoch: int
    history: list
    val_before: float
    rule: str  # the nearest-centroid rule chosen on validation
    centre: Tensor  # the training set's mean feature (for centred rules)
    config: dict  # the BodyPretrainConfig


# --- writing --------------------------------------------------------------------------------
def write_run(path: Union[str, Path], record: RunCheckpoint) -> None:
    """Write a ``RunCheckpoint`` atomically (``checkpoint.save``)."""
    state = {name: getattr(record, name) for name in _names(RunCheckpoint) if name != "learner"}
    checkpoint.save(Path(path), {"format": FORMAT, "kind": RUN_KIND, "learner": asdict(record.learner), **state})


def write_body(path: Union[str, Path], record: BodyFile) -> None:
    """Write a ``BodyFile`` atomically."""
    checkpoint.save(Path(path), {"format": FORMAT, "kind": BODY_KIND, **asdict(record)})


# --- reading --------------------------------------------------------------------------------
def read_run(path: Union[str, Path], *, resume: bool = False) -> RunCheckpoint:
    """The ``RunCheckpoint`` in a file of this format or the one before, its structure checked.

    Args:
        path: The file.
        resume: Also require what a training loop needs to continue (``last.pt``).

    Raises:
        ValueError: One line for a missing, damaged or foreign file, a pretrain-body file, or a
            checkpoint missing what is asked of it.
    """
    state = checkpoint.read(path)
    record = parse_run(state, path)
    if resume and not record.resumable:
        raise UsageError(f"{path} is not a complete run checkpoint (it holds no outer optimiser or random state to "
                         "continue from): pass the last.pt of a run")
    return record


def parse_run(state: Any, path: Union[str, Path]) -> RunCheckpoint:
    """``read_run`` of a file already read."""
    if not isinstance(state, dict) or state.get("format") not in (1, FORMAT):
        raise UsageError(f"{path} is not a bilevel_anil checkpoint (format 1 or {FORMAT})")
    if state.get("kind") == BODY_KIND:
        raise UsageError(f"{path} is a pretrain-body file (a body for ⟨pretrained⟩ PATH), not a run's checkpoint")
    if state["format"] == 1:
        state = _upgrade_run(state, path)
    elif state.get("kind") != RUN_KIND:
        raise UsageError(f"{path} is not a run checkpoint (kind {state.get('kind')!r})")
    learner = _typed(LearnerRecord, state.get("learner"), path, "learner")
    record = _typed(RunCheckpoint, {**state, "learner": learner}, path, "")
    if not record.model or not all(isinstance(v, Tensor) for v in record.model.values()):
        raise UsageError(f"{path}: its 'model' is not a state_dict (names to tensors)")
    return record


def read_body(path: Union[str, Path], what: str = "the pretrained body file") -> BodyFile:
    """The ``BodyFile`` at ``path``; one line for anything else."""
    state = checkpoint.read(path, what)
    if not isinstance(state, dict) or state.get("kind") != BODY_KIND or state.get("format") not in (1, FORMAT):
        raise UsageError(f"{what} {path} is not a pretrain-body file (run.py pretrain-body writes one)")
    return parse_body(state, path)


def parse_body(state: dict, path: Union[str, Path]) -> BodyFile:
    """``read_body`` of a file already read."""
    return _typed(BodyFile, _upgrade_body(state) if state["format"] == 1 else state, path, "")


def read_weights(path: Union[str, Path], what: str) -> Union[RunCheckpoint, BodyFile, Any]:
    """A file that holds weights: a ``BodyFile``, a ``RunCheckpoint``, or whatever else it holds
    (another library's state_dict, for ``--pretrained PATH``)."""
    state = checkpoint.read(path, what)
    if isinstance(state, dict) and state.get("format") in (1, FORMAT) and state.get("kind") == BODY_KIND:
        return parse_body(state, path)
    if isinstance(state, dict) and state.get("format") in (1, FORMAT) and isinstance(state.get("model"), dict):
        return parse_run(state, path)
    return state


# --- format 1 -------------------------------------------------------------------------------
def _upgrade_run(state: dict, path: Union[str, Path]) -> dict:
    """A format-1 run checkpoint as format 2. Its flat keys moved between releases: each
    fallback below is the older key (``config`` held ``run.py``'s settings, or the Python API's
    own few settings)."""
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    for key, kind in (("algorithm", str), ("loss", str), ("arch", dict), ("inner_lr", (int, float)),
                      ("test_inner_steps", int), ("step", int), ("model", dict)):
        if not isinstance(state.get(key), kind):
            raise UsageError(f"{path} is not a complete run checkpoint ({key!r} is missing or of the wrong type): "
                             "pass the best.pt or last.pt of a run")
    hypergrad = state.get("hypergrad_config")
    if not isinstance(hypergrad, dict):
        hypergrad = {"method": config.get("hypergrad", "cg"), "iterations": int(config.get("hypergrad_iterations", 5)),
                     "alpha": float(config.get("neumann_alpha", 0.1)), "darts_alpha": float(config.get("darts_alpha", 0.01)),
                     "damping": float(config.get("cg_damping") or 0.0),
                     "lam_damping": float(config.get("cg_lam_damping") or 0.0)}
    learner = {
        "algorithm": state["algorithm"], "grad": state.get("grad") or config.get("grad") or "unrolled",
        "first_order": bool(config.get("first_order", False)), "loss": state["loss"], "arch": state["arch"],
        "inner_lr": float(state["inner_lr"]), "inner_steps": int(state.get("inner_steps", config.get("inner_steps") or 1)),
        "test_inner_steps": state["test_inner_steps"],
        "lam": float(_first(state.get("train_lam"), state.get("lam"), 1.0)), "test_lam": float(_first(state.get("lam"), 0.0)),
        "inner_optimizer": state.get("inner_optimizer") or "sgd",
        "inner_proximal": state.get("inner_proximal") or config.get("inner_proximal") or "every",
        "hypergrad": hypergrad, "head_init": state.get("head_init") or "learned",
        "head_module": state.get("head_module"), "head_names": list(state.get("head_names") or []),
        "adapted_names": list(state["adapted_names"]) if state.get("adapted_names") is not None else None,
        "frozen": list(state.get("frozen", ())), "bn_mode": state.get("bn_mode") or "batch",
        "meta_lr": float(config.get("meta_lr") or 1e-3), "inner_batch": config.get("inner_batch"),
        "task_chunk": config.get("task_chunk"),
    }
    run = {key: state[key] for key in ("pretrained", "train_body", "normalization") if key in state}
    if config and config.get("api") != "MetaLearner":
        run["config"] = config
    return {"format": FORMAT, "kind": RUN_KIND, "learner": learner, "step": state["step"], "model": state["model"],
            **{key: state.get(key) for key in ("optimizer", "scheduler", "best", "rng")}, "run": run}


def _first(*values: Any) -> Any:
    """The first value that is set (0.0 is a value: an anil's λ)."""
    return next(v for v in values if v is not None)


def _upgrade_body(state: dict) -> dict:
    return {name: state.get(name) for name in _names(BodyFile)}


# --- checks ---------------------------------------------------------------------------------
def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


# each record's kind of file in errors, and which file to pass instead
_WHAT = {"RunCheckpoint": ("run checkpoint", "best.pt, last.pt, save()"),
         "LearnerRecord": ("run checkpoint", "best.pt, last.pt, save()"),
         "BodyFile": ("pretrain-body file", "run.py pretrain-body")}
_PLAIN = (str, int, float, bool, type(None), Tensor)


def require_plain(value: Any, name: str) -> None:
    """One line unless ``value`` holds only what a checkpoint may (tensors and plain values in
    lists, tuples and dicts with string keys): anything else would be written, then refused by
    the safe reader, so the file could never be read again."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"⟨{name}⟩ must have string keys, got {key!r}")
            require_plain(item, name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            require_plain(item, name)
    elif not isinstance(value, _PLAIN):
        raise UsageError(f"⟨{name}⟩ must hold tensors and plain values (str, numbers, None, lists, dicts) only, got "
                         f"{type(value).__name__}: a checkpoint holding it could not be read back")


def _typed(cls: type, values: Any, path: Union[str, Path], where: str) -> Any:
    """``cls(**values)`` with each field's type checked: one line naming the first field that
    is missing or of the wrong type (a damaged or crafted file)."""
    what, instead = _WHAT[cls.__name__]
    if not isinstance(values, dict):
        raise UsageError(f"{path} is not a complete {what} ({where or cls.__name__} is missing)")
    hints = typing.get_type_hints(cls)
    chosen = {}
    for f in fields(cls):
        value = values.get(f.name, _default(f))
        if not _fits(value, hints[f.name]):
            name = f"{where}.{f.name}" if where else f.name
            raise UsageError(f"{path} is not a complete {what} ({name!r} is missing or of the wrong type): "
                             f"pass a file written by this package ({instead})")
        chosen[f.name] = value
    return cls(**chosen)


_MISSING = object()


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return _MISSING


def _fits(value: Any, hint: Any) -> bool:
    if value is _MISSING:
        return False
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    kind = origin or hint
    return isinstance(value, kind) if isinstance(kind, type) else True
