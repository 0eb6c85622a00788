"""``--dataset folder``: a user's own class folders (JPEG and PNG), end to end through run.py,
its bad inputs, and ``load()`` of the checkpoint turning a PIL image into the right input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bilevel_anil
from bilevel_anil.cli import main
from bilevel_anil.training.schema import read_run


def write_folders(root: Path, classes: int = 4, per_class: int = 4, size: int = 20, seed: int = 0) -> Path:
    """train/val/test with ``classes`` class folders each; even classes JPEG, odd PNG; each
    class a colour plus noise, at sizes that need resizing."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            colour = rng.integers(0, 256, 3)
            for i in range(per_class):
                pixels = np.clip(colour + rng.normal(0, 30, (size + i, size, 3)), 0, 255).astype(np.uint8)
                ext = "jpg" if c % 2 == 0 else "png"
                Image.fromarray(pixels).save(folder / f"{i}.{ext}")
        (root / split / "class_0" / "notes.txt").write_text("not an image: skipped")
    return root


ARGS = ["--dataset", "folder", "--problem", "anil", "--ways", "3", "--shots", "1", "--queries", "2",
        "--test-queries", "2", "--iterations", "4", "--val-every", "2", "--val-tasks", "4", "--test-tasks", "4",
        "--meta-batch", "2", "--image-size", "16", "--no-progress", "--device", "cpu"]


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BILEVEL_ANIL_CACHE", str(tmp_path / "cache"))


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("channels", ["1", "3"])
def test_folder_trains_tests_and_loads(capsys, tmp_path, channels):
    root = write_folders(tmp_path / "data")
    out = tmp_path / "run"
    code, stdout, err = run(capsys, *ARGS, "--data-root", str(root), "--channels", channels, "--out", str(out))
    assert code == 0, err
    assert "tasks from" in stdout and f"{root}/test (4 train, 4 val, 4 test classes)" in stdout
    model = bilevel_anil.load(out / "best.pt")
    image = Image.open(next((root / "test" / "class_1").glob("*.png")))
    x = model.transform(image)
    assert x.shape == (int(channels), 16, 16) and x.dtype == torch.float32
    stats = read_run(out / "best.pt").run["normalization"]
    assert len(stats["mean"]) == int(channels)  # the training split's, stored
    support = torch.stack([model.transform(Image.open(next((root / "test" / f"class_{c}").iterdir())))
                           for c in range(3) if True])
    logits = model.adapt_and_predict(support, torch.arange(3), x.unsqueeze(0))
    assert logits.shape == (1, 3)


def test_folder_bad_inputs_are_one_line(capsys, tmp_path):
    root = write_folders(tmp_path / "data")
    cases = []
    no_val = tmp_path / "no_val"
    write_folders(no_val)
    import shutil
    shutil.rmtree(no_val / "val")
    cases.append((["--data-root", str(no_val)], f"{no_val} has no val/ folder"))
    small = tmp_path / "small"
    write_folders(small)
    for f in list((small / "train" / "class_2").glob("*"))[1:]:
        f.unlink()
    cases.append((["--data-root", str(small)], "class class_2 of the meta-train split has 1"))
    broken = tmp_path / "broken"
    write_folders(broken)
    (broken / "test" / "class_3" / "0.png").write_bytes(b"not a png at all")
    cases.append((["--data-root", str(broken)], f"cannot decode image {broken / 'test' / 'class_3' / '0.png'}"))
    cases.append(([], "--dataset folder needs --data-root DIR"))
    cases.append((["--data-root", str(root), "--channels", "2"], "--channels must be 1 (grey) or 3 (RGB)"))
    for extra, fragment in cases:
        code, _, err = run(capsys, *ARGS, *extra, "--out", str(tmp_path / "out" / str(len(extra))))
        assert code == 2, (extra, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (fragment, err)
    code, _, err = run(capsys, "--dataset", "omniglot", "--channels", "3")
    assert code == 2 and "--channels applies to --dataset folder" in err


def test_image_folder_tasks_from_python(tmp_path):
    root = write_folders(tmp_path / "data")
    tasks = bilevel_anil.image_folder_tasks(root, ways=3, shots=1, queries=2, split="val", image_size=16, seed=0)
    batch = tasks.sample(2)
    assert batch.support.x.shape == (2, 3, 3, 16, 16) and batch.query.y.shape == (2, 6)
    again = bilevel_anil.image_folder_tasks(root, ways=3, shots=1, queries=2, split="val", image_size=16, seed=0)
    assert torch.equal(again.sample(2).support.x, batch.support.x)
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        bilevel_anil.image_folder_tasks(root, 3, 1, 2, split="validation")

