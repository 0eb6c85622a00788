"""``run.py pretrain-body``: train a body as an ordinary classifier over all meta-training classes.

What meta-learning papers do before meta-training (Meta-Baseline, "Rethinking few-shot",
P>M>F): shuffled minibatches of the meta-training classes, cross-entropy over all of them,
Adam with a cosine learning-rate schedule. Omniglot's 90°, 180° and 270° rotations are extra
classes, as in its episodes; colour images are augmented with random crops (padded by 1/8 of
the size) and horizontal flips. After each epoch the frozen body is scored by few-shot
accuracy on fixed meta-validation tasks under every nearest-centroid rule
(``bilevel_anil.recipes.nearest_centroid``); the best epoch's body, with its best rule, is written
to a file that ``--pretrained PATH`` takes. ``--time-budget`` stops it after that many wall
seconds, its last validation included (the schedule then runs over the budget).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..data.augment import crop_and_flip, rotate_classes
from ..errors import (UsageError, require_device, require_output, require_positive_integers, require_positive_numbers,
                      require_seed)
from ..core.evaluation import Interval
from ..models import BODIES, image_model, smallest_image_size
from ..training.budget import Budget
from ..training.schema import BodyFile, write_body
from .nearest_centroid import ALL_RULES, best_rule, centroid_scores, training_mean_feature
from ..settings import setting, shared

SCHEDULES = ("cosine", "constant")


@dataclass
class BodyPretrainConfig:
    """The settings of ``run.py pretrain-body``: each field is the flag of the same name.

    Each field's flag, meaning and default are listed below, on the
    [Every flag](guide/cli-reference.md) page and by ``run.py pretrain-body --help``, all from one
    declaration per field. ``bilevel_anil.recipes.pretrain_body.pretrain_body(cfg)`` runs
    it and returns the best epoch's record with the file's ``path``.

    Examples:
        >>> from bilevel_anil import BodyPretrainConfig
        >>> cfg = BodyPretrainConfig(arch="conv4", data_root="../shared/data", epochs=3)
        >>> cfg.schedule, cfg.lr, cfg.rotations  # rotations None: where the data set's episodes use them
        ('cosine', 0.001, None)
    """

    arch: str = setting("resnet18", "body: {archs}", metavar="NAME")
    dataset: str = setting("omniglot", "data set: {datasets}", metavar="NAME")
    data_root: Optional[str] = shared("data_root")
    download: bool = shared("download")
    image_size: Optional[int] = setting(None, "input size in pixels (default: the data set's)", metavar="PIXELS")
    channels: int = setting(3, "--dataset folder: 1 (grey) or 3 (RGB)")
    epochs: Optional[int] = setting(None, "passes over the training images (default 5; with --time-budget: as "
                                          "many as the budget allows)")
    time_budget: Optional[float] = setting(None, "stop after this many wall seconds (loading, epochs and "
                                                 "validations); the learning-rate schedule runs over them",
                                           metavar="SECONDS")
    batch_size: int = setting(128, "minibatch size")
    lr: float = setting(1e-3, "Adam learning rate")
    weight_decay: float = setting(0.0, "Adam weight decay")
    schedule: str = setting("cosine", "learning rate: cosine (to 0 over the epochs or the budget) or constant")
    rotations: Optional[bool] = setting(None, "no rotated copies of the classes (default: rotations where the "
                                              "data set's episodes use them, i.e. Omniglot)", flag="--no-rotations")
    augment: Optional[bool] = setting(None, "no augmentation (default for colour images: random crops and "
                                            "horizontal flips)", flag="--no-augment")
    ways: int = setting(5, "validation tasks' classes")
    shots: int = setting(1, "validation tasks' shots")
    test_queries: int = setting(15, "validation tasks' queries per class")
    val_tasks: int = setting(200, "validation tasks")
    seed: int = shared("seed")
    device: Optional[str] = shared("device")
    out: Optional[str] = shared("out")
    progress: Optional[bool] = shared("progress")


def pretrain_body(cfg: BodyPretrainConfig, splits: Optional[dict] = None, *, batch_flag: str = "--batch-size") -> dict:
    """Train, validate after every epoch, write the best epoch's body; returns the best epoch's
    record (``epoch``, ``val_accuracy`` under its ``rule``, ``seconds``, ...) with the file's
    ``path``. ``splits`` (``train``/``val`` ``ClassImages``) replaces the data set's
    splits read from ``cfg.data_root``; ``batch_flag`` names the batch size in errors."""
    from .experiment import seed_everything

    budget = Budget(cfg.time_budget)  # wall time: loading, epochs and validations
    seed_everything(cfg.seed)
    run = _Pretraining(cfg, splits, batch_flag)
    before, _, budget.reserve = run.validate()  # the latest validation's time is reserved at the budget's end
    rule = best_rule(before)
    print(f"epoch 0: validation {rule.name} {before[rule].percent()}", flush=True)
    history: list[dict] = []
    best = None
    for epoch in range(1, run.epochs + 1):
        total, seen, out_of_time = run.epoch(epoch, budget)
        if not math.isfinite(total):
            raise UsageError(f"pretrain-body diverged in epoch {epoch} (non-finite loss): lower --lr")
        scores, centre, budget.reserve = run.validate()
        rule = best_rule(scores)
        history.append({"epoch": epoch, "train_loss": total / seen, "val_accuracy": scores[rule].mean,
                        "val_ci95": scores[rule].ci95, "rule": rule.name,
                        "rules": {r.name: scores[r].mean for r in scores}, "images": seen,
                        "seconds": round(budget.spent(), 1)})
        others = "  ".join(f"{r.name} {100 * scores[r].mean:.2f}" for r in scores)
        partial = f" (stopped by --time-budget after {seen} images)" if out_of_time else ""
        print(f"epoch {epoch}: train loss {total / seen:.4f}  validation {rule.name} {scores[rule].percent()}  "
              f"[{others}]  ({history[-1]['seconds']} s){partial}", flush=True)
        if best is None or scores[rule].mean > best["val_accuracy"]:
            best = history[-1]
            model = run.model
            write_body(run.out, BodyFile(arch={k: v for k, v in model.arch.items() if k != "ways"},
                                         body={k: v.detach().cpu() for k, v in model.body.state_dict().items()},
                                         best_epoch=epoch, history=history, val_before=before[best_rule(before)].mean,
                                         rule=rule.name, centre=centre.detach().cpu(), config=asdict(cfg)))
        if out_of_time:
            break
    print(f"wrote {run.out} (epoch {best['epoch']}, validation {best['rule']} {100 * best['val_accuracy']:.2f}%); use "
          f"it with --arch {cfg.arch} --pretrained {run.out}", flush=True)
    return {"path": str(run.out), **best, "history": history}


class _Pretraining:
    """What one body pretraining works with: the data, the network with its classifier over
    the training classes, the optimiser and the validation tasks; an epoch, a validation."""

    def __init__(self, cfg: BodyPretrainConfig, splits: Optional[dict], batch_flag: str):
        from ..data import ClassificationTasks, fixed_tasks
        from ..data.registry import dataset_spec

        self.cfg = cfg
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        spec = dataset_spec(cfg.dataset)
        size = spec.image_size or cfg.image_size or spec.default_image_size
        channels = spec.input_channels(cfg)
        if splits is None:
            splits = spec.load_splits(replace(cfg, image_size=size))
        self.train = train = splits["train"]
        self.rotations = spec.rotations if cfg.rotations is None else cfg.rotations
        self.augment = channels == 3 if cfg.augment is None else cfg.augment
        classes = len(train.classes) * (4 if self.rotations else 1)
        self.model = image_model(cfg.arch, cfg.ways, in_channels=channels, image_size=size).to(self.device)
        self.classifier = nn.Linear(self.model.head.in_features, classes).to(self.device)
        params = list(self.model.body.parameters()) + list(self.classifier.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train.images, train.labels),
                                                  batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                                  generator=torch.Generator().manual_seed(cfg.seed))
        if len(self.loader) == 0:
            raise UsageError(f"{batch_flag} {cfg.batch_size} is larger than the {len(train.labels)} training images "
                             f"(incomplete batches are dropped): lower {batch_flag}")
        self.epochs = cfg.epochs or (10 ** 6 if cfg.time_budget else 5)
        self.steps, self.total_steps = 0, self.epochs * len(self.loader)
        self.augmenter = torch.Generator().manual_seed(cfg.seed + 3)
        self.val_tasks = fixed_tasks(ClassificationTasks(splits["val"], cfg.ways, cfg.shots, cfg.test_queries, False,
                                                         "meta-validation"), cfg.val_tasks, seed=cfg.seed + 1)
        self.out = Path(cfg.out) if cfg.out else \
            Path("runs") / f"pretrain-body-{cfg.arch}-{time.strftime('%Y%m%d-%H%M%S')}.pt"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._announce(classes, size)

    def _announce(self, classes: int, size: int) -> None:
        cfg = self.cfg
        length = (f"{cfg.time_budget:g} s" + (f" or {cfg.epochs} epoch(s)" if cfg.epochs else "")) \
            if cfg.time_budget else f"{self.epochs} epoch(s)"
        extras = ", ".join(x for x in ("rotations as classes" if self.rotations else "",
                                       "crops and flips" if self.augment else "") if x) or "no augmentation"
        print(f"pretrain-body: {cfg.arch} as a {classes}-class classifier on the {cfg.dataset} meta-training classes "
              f"({len(self.train.labels)} images, {size}x{size}; {extras}), {length} of batch {cfg.batch_size}, Adam "
              f"lr {cfg.lr} ({cfg.schedule}); validated by nearest-centroid {cfg.ways}-way {cfg.shots}-shot accuracy "
              f"on {cfg.val_tasks} meta-validation tasks; output {self.out}", flush=True)

    def validate(self) -> tuple[dict, Optional[Tensor], float]:
        """Every rule's validation accuracy, the centre it used, and the seconds it took."""
        began = time.perf_counter()
        centre = training_mean_feature(self.model, self.train.images, self.train.to_input, seed=self.cfg.seed)
        scores = {r: Interval.of(s) for r, s in centroid_scores(self.model, self.val_tasks, ALL_RULES, centre).items()}
        return scores, centre, time.perf_counter() - began

    def epoch(self, epoch: int, budget: Budget) -> tuple[float, int, bool]:
        """One pass over the training images (cut short when the budget, with the latest
        validation's time in reserve, is spent): the summed loss, the images seen, and
        whether the budget ended it."""
        cfg, model = self.cfg, self.model
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(self.loader, desc=f"epoch {epoch}" + (f"/{cfg.epochs}" if cfg.epochs else ""), unit="batch",
                   dynamic_ncols=True, disable=(not cfg.progress) if cfg.progress is not None else None)
        for x, y in bar:
            if cfg.schedule == "cosine":  # over the steps or the budget, whichever is further along
                done = max(self.steps / self.total_steps, budget.fraction())
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
            x = self.train.to_input(x)
            if self.rotations:
                x, y = rotate_classes(x, y, self.augmenter)
            if self.augment:
                x = crop_and_flip(x, self.augmenter)
            x, y = x.to(self.device), y.to(self.device)
            loss = F.cross_entropy(self.classifier(model.body(x)), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            total, seen = total + loss.item() * len(y), seen + len(y)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if budget.over():
                bar.close()
                return total, seen, True
        bar.close()
        return total, seen, False


def validate_config(cfg: BodyPretrainConfig) -> None:
    """One line for the first setting that cannot run."""
    from ..data.registry import DATASETS

    if cfg.arch not in BODIES:
        raise UsageError(f"unknown --arch {cfg.arch!r}: choose one of {', '.join(BODIES)}")
    usable = [name for name, spec in DATASETS.items() if spec.load_splits]
    if cfg.dataset not in usable:
        raise UsageError(f"--dataset {cfg.dataset!r} cannot be pretrained on: choose one of {', '.join(usable)}")
    require_positive_integers({name.replace("_", "-"): getattr(cfg, name)
                               for name in ("epochs", "batch_size", "ways", "shots", "test_queries", "val_tasks")
                               if getattr(cfg, name) is not None})
    spec = DATASETS[cfg.dataset]
    if spec.image_size and cfg.image_size not in (None, spec.image_size):
        raise UsageError(f"--image-size does not apply to {cfg.dataset} (its images are {spec.image_size} pixels): "
                         "drop it")
    size = spec.image_size or cfg.image_size or spec.default_image_size
    smallest = smallest_image_size(cfg.arch)
    if size < smallest:
        raise UsageError(f"--image-size must be at least {smallest} pixels for {cfg.arch} (smaller inputs vanish "
                         f"in its poolings), got {size}")
    if cfg.channels not in (1, 3):
        raise UsageError(f"--channels must be 1 (grey) or 3 (RGB), got {cfg.channels}")
    require_positive_numbers({"lr": cfg.lr})
    if cfg.time_budget is not None:
        require_positive_numbers({"time-budget": cfg.time_budget})
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise UsageError(f"--weight-decay must be a number >= 0, got {cfg.weight_decay}")
    if cfg.schedule not in SCHEDULES:
        raise UsageError(f"unknown --schedule {cfg.schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if cfg.ways < 2:
        raise UsageError(f"--ways must be at least 2 for classification, got {cfg.ways}")
    require_seed(cfg.seed)
    require_device(cfg.device)
    require_output(cfg.out, kind="file")
