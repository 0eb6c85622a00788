"""Pretrained bodies (``--pretrained imagenet|PATH``): torchvision's ImageNet weights, a plain or
wrapped state_dict, a ``pretrain-body`` output, or the body of a run's checkpoint.

What is loaded is the body only (the head is new: it has ``--ways`` outputs). Two conversions
are made and reported: a first convolution saved for 3 input channels is given to a 1-channel
body as the sum of its RGB kernels (a grey image repeated in R, G and B then yields the same
activations as with the original kernels), and BatchNorm running statistics are dropped (the
bodies here normalise each set with its own statistics).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from .schema import BodyFile, RunCheckpoint, read_weights
from ..errors import UsageError, first_line
from ..models.torchvision_bodies import TORCHVISION_BODIES

_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``arch`` (downloaded once into torch's hub cache)."""
    if arch not in TORCHVISION_BODIES:
        raise UsageError(f"⟨pretrained⟩ imagenet: {arch} has no ImageNet weights; choose one of "
                         f"{', '.join(TORCHVISION_BODIES)} or pass ⟨pretrained⟩ PATH")
    weights = TORCHVISION_BODIES[arch].imagenet_weights()
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # offline, proxy, checksum, read-only cache
        file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        reason = first_line(exc)
        raise UsageError(f"⟨pretrained⟩ imagenet: {file} is missing and downloading {weights.url} failed "
                         f"({reason}): put that file there, or pass ⟨pretrained⟩ PATH") from None


def file_state_dict(path: Path, arch: str) -> dict[str, Tensor]:
    """The body weights in a file: a ``pretrain-body`` output, a run checkpoint (``model``), a
    wrapped (``state_dict``) or a plain state_dict, with ``module.``/``body.`` prefixes removed."""
    data = read_weights(path, "⟨pretrained⟩")  # the package's one safe loader: no code from the file runs
    if isinstance(data, (BodyFile, RunCheckpoint)):
        saved_arch = data.arch if isinstance(data, BodyFile) else data.learner.arch
        if saved_arch.get("name") not in (None, arch):
            what = "body" if isinstance(data, BodyFile) else "checkpoint"
            raise UsageError(f"⟨pretrained⟩ {path} holds a {saved_arch['name']} {what}, not {arch}: "
                             f"pass ⟨arch⟩ {saved_arch['name']} or another file")
        data = data.body if isinstance(data, BodyFile) else data.model
    elif isinstance(data, dict):
        if isinstance(data.get("arch"), dict) and data["arch"].get("name") not in (None, arch):
            raise UsageError(f"⟨pretrained⟩ {path} is a {data['arch']['name']} checkpoint, not {arch}: "
                             f"pass ⟨arch⟩ {data['arch']['name']} or another file")
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, Tensor) for v in data.values()):
        raise UsageError(f"⟨pretrained⟩ {path} holds no state_dict (a mapping of names to tensors)")
    state = {}
    for name, value in data.items():
        name = name.removeprefix("module.")
        if name.startswith("head."):
            continue
        state[name.removeprefix("body.")] = value
    return state


def load_body(body: nn.Module, state: Mapping[str, Tensor], source: str, classifier: str = "fc") -> list[str]:
    """Copy ``state`` into ``body``; returns the conversions made, one phrase each.

    Raises a one-line ``UsageError`` naming the first key that is missing, unexpected or
    of another shape (so a file of another architecture is refused)."""
    own = body.state_dict()
    notes = []
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    dropped = [k for k in state if k.endswith(_BN_BUFFERS) and k not in own]
    if dropped:
        notes.append("BatchNorm running statistics not used (each set is normalised with its own)")
    state = {k: v for k, v in state.items() if k not in dropped}
    missing = [k for k in own if k not in state]
    if missing:
        raise UsageError(f"{source} has no {missing[0]!r} ({len(missing)} of the body's {len(own)} tensors "
                         f"missing): it is not a body of this architecture")
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise UsageError(f"{source} holds {unexpected[0]!r}, which this body does not have "
                         f"({len(unexpected)} unexpected tensors): it is another architecture")
    for name, target in own.items():
        value = state[name]
        if value.shape != target.shape:
            rgb_to_grey = (value.dim() == 4 and target.dim() == 4 and value.shape[1] == 3 and target.shape[1] == 1
                           and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:])
            if not rgb_to_grey:
                raise UsageError(f"{source}: {name!r} has shape {tuple(value.shape)}, this body needs "
                                 f"{tuple(target.shape)}: it is another architecture or input size")
            state[name] = value.sum(dim=1, keepdim=True)
            notes.append(f"{name} from the sum of its RGB kernels")
    body.load_state_dict(state)
    return notes


def load_pretrained(model: nn.Module, source: str) -> str:
    """Load ``source`` (``"imagenet"`` or a path) into ``model.body``; returns a sentence
    saying what was loaded and how (for the run's first lines and its report)."""
    arch = model.arch["name"]
    if source == "imagenet":
        state = imagenet_state_dict(arch)
        origin = f"torchvision {TORCHVISION_BODIES[arch].imagenet_weights()} ImageNet weights"
    else:
        state = file_state_dict(Path(source), arch)
        origin = f"weights from {source}"
    classifier = TORCHVISION_BODIES[arch].classifier if arch in TORCHVISION_BODIES else "fc"
    notes = load_body(model.body, state, f"⟨pretrained⟩ {source}", classifier)
    return origin + ("; " + "; ".join(notes) if notes else "")
