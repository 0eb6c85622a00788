"""Where a run's per-step metrics go: always ``metrics.csv``, and TensorBoard with ``--log tensorboard``.

Both get the same scalars at the same steps. On ``--resume`` the rows (and TensorBoard events)
written after the checkpoint being continued are dropped, so a resumed run's log reads as if it
had never stopped.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import UsageError

METRICS = ["step", "train_loss", "train_score", "val_score", "val_ci95", "elapsed_s", "train_s", "steps_per_s"]
LOGGERS = ("csv", "tensorboard")
TENSORBOARD_DIR = "tensorboard"


def summary_writer_class():
    """torch's ``SummaryWriter``, or a one-line error saying how to install the optional extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError("⟨log⟩ tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or pip install -e '.[tensorboard]'), or drop ⟨log⟩") from None
    return SummaryWriter


def keep_rows_up_to(path: Path, step: int) -> None:
    """Drop the rows of a metrics file after ``step`` (written after the checkpoint that a
    resumed run continues from), replacing the file atomically."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"⟨resume⟩: {path} is not the CSV this package writes ({type(exc).__name__}); move it away "
                         "and ⟨resume⟩ again (the rows up to the checkpoint are then lost)") from None
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRICS)
        writer.writeheader()
        writer.writerows(r for r in rows if r.get("step", "").isdigit() and int(r["step"]) <= step)
    os.replace(tmp, path)


class MetricsLog:
    """Open with ``with MetricsLog(out_dir, start_step, tensorboard) as log: log.write(row)``."""

    def __init__(self, out_dir: Path, start_step: int = 0, tensorboard: bool = False, enabled: bool = True):
        self.enabled = enabled  # False: writes nothing (the processes of a run other than rank 0)
        self.path = out_dir / "metrics.csv"
        self.start_step = start_step
        self.tensorboard = tensorboard
        self._fh = self._csv = self._writer = None

    def __enter__(self) -> "MetricsLog":
        if not self.enabled:
            return self
        new_file = self.start_step == 0 or not self.path.exists()
        if not new_file:
            keep_rows_up_to(self.path, self.start_step)
        self._fh = open(self.path, "w" if new_file else "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._fh, fieldnames=METRICS)
        if new_file:
            self._csv.writeheader()
        if self.tensorboard:
            # purge_step drops events at steps after the checkpoint (TensorBoard's own mechanism)
            self._writer = summary_writer_class()(log_dir=str(self.path.parent / TENSORBOARD_DIR),
                                                  purge_step=self.start_step + 1 if self.start_step else None)
        return self

    def write(self, row: dict[str, Any], durable: bool = False) -> None:
        """One outer step's row; empty fields (no validation at this step) are left out of
        TensorBoard. ``durable``: also fsync the file (before a checkpoint that covers the row)."""
        if not self.enabled:
            return
        try:
            self._csv.writerow(row)
            self._fh.flush()
            if durable:
                os.fsync(self._fh.fileno())
        except OSError as exc:  # a full disk: the checkpoint of this step is not written either
            raise UsageError(f"cannot write {self.path} ({exc.strerror or type(exc).__name__}); the last checkpoint "
                             "is intact: free space and continue with ⟨resume⟩") from None
        if self._writer is not None:
            for key in METRICS[1:]:
                if row.get(key, "") != "":
                    self._writer.add_scalar(key, float(row[key]), global_step=int(row["step"]))
            self._writer.flush()

    def __exit__(self, *exc: Optional[object]) -> None:
        if not self.enabled:
            return
        self._fh.close()
        if self._writer is not None:
            self._writer.close()
