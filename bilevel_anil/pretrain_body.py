"""``run.py pretrain-body``: train a body as an ordinary classifier over all meta-training classes.

Shuffled minibatches from a torch ``DataLoader``, Adam, cross-entropy over the meta-training
characters; after each epoch the frozen body is scored by few-shot accuracy on fixed
meta-validation tasks (nearest class mean of its features, each set normalised with its own
BatchNorm statistics as in meta-learning). The best epoch's body is written to a file that
``--pretrained PATH`` takes (S3 and S4 of ``run.py scenarios`` where ImageNet weights cannot
be fetched).
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import checkpoint
from .errors import (UsageError, require_device, require_output, require_positive_integers,
                     require_positive_numbers, require_seed)
from .evaluation import Interval, eval_mode
from .models import BODIES, image_model, smallest_image_size
from .models.pretrained import BODY_FILE_KIND
from .settings import build_parser as build_settings_parser, setting, shared


@dataclass
class BodyPretrainConfig:
    """Settings of ``run.py pretrain-body`` (each field is its flag; see its ``--help``)."""

    arch: str = setting("resnet18", "body: {archs}", metavar="NAME")
    data_root: Optional[str] = shared("data_root")
    download: bool = shared("download")
    image_size: int = setting(28, "input size in pixels", metavar="PIXELS")
    epochs: int = setting(5, "passes over the training images")
    batch_size: int = setting(128, "minibatch size")
    lr: float = setting(1e-3, "Adam learning rate")
    ways: int = setting(5, "validation tasks' classes")
    shots: int = setting(1, "validation tasks' shots")
    test_queries: int = setting(15, "validation tasks' queries per class")
    val_tasks: int = setting(200, "validation tasks")
    seed: int = shared("seed")
    device: Optional[str] = shared("device")
    out: Optional[str] = shared("out")
    progress: Optional[bool] = shared("progress")


def nearest_mean_accuracy(model: nn.Module, episodes, chunk: int = 16) -> Interval:
    """Few-shot accuracy of a frozen body: each query takes the class whose support features'
    mean is nearest (Euclidean). ``model`` has ``body_forward``; episodes are [B, n, ...]."""
    theta = {n: p.detach() for n, p in model.named_parameters()}
    device = next(iter(theta.values())).device
    scores = []
    with torch.no_grad(), eval_mode(model):
        for part in episodes.chunks(chunk):
            part = part.to(device)
            support = model.body_forward(theta, part.support.x)
            query = model.body_forward(theta, part.query.x)
            ways = int(part.support.y.max()) + 1
            onehot = F.one_hot(part.support.y, ways).to(support.dtype)  # [B, n, N]
            means = onehot.transpose(1, 2) @ support / onehot.sum(1).unsqueeze(-1)
            predicted = torch.cdist(query, means).argmin(-1)
            scores.append((predicted == part.query.y).float().mean(1).cpu())
    return Interval.of(torch.cat(scores))


def pretrain_body(cfg: BodyPretrainConfig, splits: Optional[dict] = None) -> dict:
    """Train, validate after every epoch, write the best epoch's body; returns the best epoch's
    record with the file's ``path``. ``splits`` (``train``/``val`` :class:`ClassImages`) replaces
    the Omniglot splits read from ``cfg.data_root``."""
    from .data import ClassificationTasks, fixed_tasks, load_omniglot
    from .experiment import seed_everything

    seed_everything(cfg.seed)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if splits is None:
        root = Path(cfg.data_root or "data")
        if cfg.data_root is None:
            root.mkdir(exist_ok=True)
        splits = load_omniglot(root, download=cfg.download, image_size=cfg.image_size)
    train = splits["train"]
    classes = len(train.classes)
    model = image_model(cfg.arch, cfg.ways, image_size=cfg.image_size).to(device)
    classifier = nn.Linear(model.head.in_features, classes).to(device)
    params = list(model.body.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train.images, train.labels),
                                         batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    if len(loader) == 0:
        raise UsageError(f"--batch-size {cfg.batch_size} is larger than the {len(train.labels)} training images "
                         "(incomplete batches are dropped): lower --batch-size")
    val_tasks = fixed_tasks(ClassificationTasks(splits["val"], cfg.ways, cfg.shots, cfg.test_queries, False,
                                                "meta-validation"), cfg.val_tasks, seed=cfg.seed + 1)
    out = Path(cfg.out) if cfg.out else Path("runs") / f"pretrain-body-{cfg.arch}-{time.strftime('%Y%m%d-%H%M%S')}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    label = f"{cfg.ways}-way {cfg.shots}-shot"
    print(f"pretrain-body: {cfg.arch} as a {classes}-class classifier on the meta-training classes "
          f"({len(train.labels)} images, {cfg.image_size}x{cfg.image_size}), {cfg.epochs} epoch(s) of batch "
          f"{cfg.batch_size}, Adam lr {cfg.lr}; validated by nearest-mean {label} accuracy on {cfg.val_tasks} "
          f"meta-validation tasks; output {out}", flush=True)
    before = nearest_mean_accuracy(model, val_tasks)
    print(f"epoch 0: validation {before.percent()}", flush=True)
    history, best, started = [], None, time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", dynamic_ncols=True,
                   disable=(not cfg.progress) if cfg.progress is not None else None)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(classifier(model.body(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        if not math.isfinite(total):
            raise UsageError(f"pretrain-body diverged in epoch {epoch} (non-finite loss): lower --lr")
        val = nearest_mean_accuracy(model, val_tasks)
        history.append({"epoch": epoch, "train_loss": total / seen, "val_accuracy": val.mean, "val_ci95": val.ci95,
                        "seconds": round(time.perf_counter() - started, 1)})
        print(f"epoch {epoch}: train loss {total / seen:.4f}  validation {val.percent()}  "
              f"({history[-1]['seconds']} s)", flush=True)
        if best is None or val.mean > best["val_accuracy"]:
            best = history[-1]
            record = {"kind": BODY_FILE_KIND, "arch": {k: v for k, v in model.arch.items() if k != "ways"},
                      "body": {k: v.detach().cpu() for k, v in model.body.state_dict().items()},
                      "best_epoch": epoch, "history": history, "val_before": before.mean,
                      "config": asdict(cfg)}
            checkpoint.save(out, record)
    print(f"wrote {out} (epoch {best['epoch']}, validation {100 * best['val_accuracy']:.2f}%); use it with "
          f"--arch {cfg.arch} --pretrained {out}", flush=True)
    return {"path": str(out), **best}


def build_parser() -> argparse.ArgumentParser:
    """``run.py pretrain-body``'s parser, generated from :class:`BodyPretrainConfig`."""
    from .argparsing import HelpFormatter, Parser

    return build_settings_parser(
        BodyPretrainConfig, prog="run.py pretrain-body", parser_class=Parser, formatter_class=HelpFormatter,
        description="Pretrain a body as a classifier over the Omniglot meta-training classes; writes a file for "
                    "--pretrained PATH (--out, default runs/pretrain-body-<arch>-<time>.pt).",
        context={"archs": ", ".join(BODIES)})


def main(argv: Sequence[str]) -> int:
    def run() -> None:
        cfg = BodyPretrainConfig(**vars(build_parser().parse_args(argv)))
        if cfg.arch not in BODIES:
            raise UsageError(f"unknown --arch {cfg.arch!r}: choose one of {', '.join(BODIES)}")
        require_positive_integers({name.replace("_", "-"): getattr(cfg, name)
                                   for name in ("epochs", "batch_size", "ways", "shots", "test_queries", "val_tasks")})
        smallest = smallest_image_size(cfg.arch)
        if cfg.image_size < smallest:
            raise UsageError(f"--image-size must be at least {smallest} pixels for {cfg.arch} (smaller inputs vanish "
                             f"in its poolings), got {cfg.image_size}")
        require_positive_numbers({"lr": cfg.lr})
        if cfg.ways < 2:
            raise UsageError(f"--ways must be at least 2 for classification, got {cfg.ways}")
        require_seed(cfg.seed)
        require_device(cfg.device)
        require_output(cfg.out, kind="file")
        pretrain_body(cfg)

    from .argparsing import report_errors
    return report_errors("run.py pretrain-body", run, "the best body so far is in its --out file, if an epoch finished")
