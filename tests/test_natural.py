"""The natural-image benchmarks load from files written in learn2learn's formats (tiny
fixtures of random pixels, tests/natural_fixtures.py) through the real code path; damaged or
missing files give one line; a short meta-training run goes end to end on each."""
import json
import pickle

import pytest
import torch

import bilevel_anil
from bilevel_anil.cli import main
from bilevel_anil.data import ClassificationTasks
from bilevel_anil.data import natural
from bilevel_anil.data.natural import NATURAL_DATASETS, load_natural

from natural_fixtures import CLASSES, IMAGES, write_fixture

DATASETS = sorted(NATURAL_DATASETS)
SHORT = ["--iterations", "2", "--val-every", "2", "--val-tasks", "2", "--test-tasks", "3", "--meta-batch", "2",
         "--queries", "2", "--test-queries", "2", "--no-progress"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BILEVEL_ANIL_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", DATASETS)
def test_splits_shapes_and_one_episode(name, tmp_path):
    root = write_fixture(name, tmp_path / name)
    spec = NATURAL_DATASETS[name]
    splits = load_natural(name, root, download=False)
    assert {k: len(v.classes) for k, v in splits.items()} == CLASSES
    size = spec.image_size
    for split in splits.values():
        assert split.images.shape[1:] == (3, size, size) and split.images.dtype == torch.uint8
        assert split.images_per_class() == IMAGES
    tasks = ClassificationTasks(splits["train"], ways=5, shots=1, queries=3)
    batch = tasks.sample(2)
    assert batch.support.x.shape == (2, 5, 3, size, size) and batch.query.x.shape == (2, 15, 3, size, size)
    assert batch.support.x.dtype == torch.float32
    assert torch.equal(batch.query.y[0], torch.arange(5).repeat_interleave(3))
    # normalised per channel with the dataset's statistics: random pixels have mean 0.5
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    expected = ((0.5 - mean) / torch.tensor(spec.std).view(3, 1, 1)).flatten()
    assert torch.allclose(batch.support.x.mean(dim=(0, 1, 3, 4)), expected, atol=0.05)


def test_decoded_pixels_are_cached(tmp_path, monkeypatch):
    root = write_fixture("tiered-imagenet", tmp_path / "tiered")
    first = load_natural("tiered-imagenet", root, download=False)
    monkeypatch.setattr(natural, "_l2l_dataset", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    second = load_natural("tiered-imagenet", root, download=False)
    assert all(torch.equal(first[k].images, second[k].images) for k in first)


def one_line(capsys, code, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0], err[0]


@pytest.mark.parametrize("name, missing", [("mini-imagenet", "mini-imagenet-cache-train.pkl"),
                                           ("tiered-imagenet", "tiered-imagenet/train_images_png.pkl"),
                                           ("fc100", "FC100_train.pickle"),
                                           ("cifar-fs", "cifarfs/cifar100/data")])
def test_missing_files_offline_are_one_line(name, missing, tmp_path, capsys):
    code = main(["--dataset", name, "--data-root", str(tmp_path), "--no-download", *SHORT])
    one_line(capsys, code, f"{NATURAL_DATASETS[name].title} is not under {tmp_path}", missing)


def test_failed_download_is_one_line(tmp_path, capsys, monkeypatch):
    from learn2learn.vision.datasets import fc100

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(fc100, "download_file", offline)
    monkeypatch.setattr(fc100, "download_file_from_google_drive", offline)
    code = main(["--dataset", "fc100", "--data-root", str(tmp_path), *SHORT])
    one_line(capsys, code, "FC100 is not under", "downloading it failed", "FC100_train.pickle")


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("name, damage", [
    ("mini-imagenet", lambda root: _truncate(root / "mini-imagenet-cache-train.pkl")),
    ("fc100", lambda root: (root / "FC100_val.pickle").write_bytes(pickle.dumps([1, 2, 3]))),
    ("tiered-imagenet", lambda root: (root / "tiered-imagenet" / "test_labels.pkl").write_bytes(pickle.dumps({}))),
    ("cifar-fs", lambda root: next((root / "cifarfs" / "cifar100" / "data").rglob("*.png")).write_bytes(b"not png")),
])
def test_damaged_or_foreign_files_are_one_line(name, damage, tmp_path, capsys):
    root = write_fixture(name, tmp_path / name)
    damage(root)
    code = main(["--dataset", name, "--data-root", str(root), "--no-download", *SHORT])
    one_line(capsys, code, f"cannot read {NATURAL_DATASETS[name].title}", "download them again")


def test_image_size_is_the_datasets(tmp_path, capsys):
    code = main(["--dataset", "fc100", "--data-root", str(tmp_path), "--image-size", "28", *SHORT])
    one_line(capsys, code, "--image-size applies to Omniglot and --dataset folder; FC100's images are 32x32")


@pytest.mark.parametrize("name, extra", [("mini-imagenet", []), ("tiered-imagenet", ["--problem", "anil"]),
                                         ("fc100", []), ("cifar-fs", ["--arch", "resnet12", "--problem", "anil"])])
def test_short_meta_training_runs_end_to_end(name, extra, tmp_path):
    root = write_fixture(name, tmp_path / name)
    out = tmp_path / "run"
    args = ["--dataset", name, "--data-root", str(root), "--out", str(out), *SHORT, *extra]
    if name in ("mini-imagenet", "tiered-imagenet"):
        args += ["--inner-steps", "1", "--test-inner-steps", "1"]  # the defaults' 5 and 10 steps at 84x84 are slow
    assert main(args) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["dataset"] == name and report["steps_done"] == 2
    assert report["arch"] == ("resnet12" if "resnet12" in extra else "conv4")
    assert report["test"]["5-way " + ("5" if name == "fc100" else "1") + "-shot"]["0"]["tasks"] == 3
    model = bilevel_anil.load(out / "best.pt")
    from PIL import Image
    image = Image.new("RGB", (50, 40), (255, 128, 0))
    x = model.transform(image)
    size = NATURAL_DATASETS[name].image_size
    assert x.shape == (3, size, size)
    spec = NATURAL_DATASETS[name]
    assert x[0, 0, 0].item() == pytest.approx((1.0 - spec.mean[0]) / spec.std[0], rel=1e-5)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name, victim", [
    ("mini-imagenet", "mini-imagenet-cache-train.pkl"),
    ("fc100", "FC100_train.pickle"),
    ("tiered-imagenet", "tiered-imagenet/train_labels.pkl"),
])
def test_a_crafted_pickle_runs_no_code(name, victim, tmp_path, capsys):
    """learn2learn reads these formats with pickle.load; here its pickle module is replaced by a
    restricted one while it reads: a file whose pickle calls os.system is refused, nothing runs."""
    root = write_fixture(name, tmp_path / name)
    marker = tmp_path / "ran"
    with open(root / victim, "rb") as fh:
        data = pickle.load(fh)
    with open(root / victim, "wb") as fh:
        pickle.dump({"payload": _Payload(marker), **(data if isinstance(data, dict) else {"images": data})}, fh)
    code = main(["--dataset", name, "--data-root", str(root), "--no-download", *SHORT])
    one_line(capsys, code, f"cannot read {NATURAL_DATASETS[name].title}", "refused global")
    assert not marker.exists()
    from learn2learn.vision.datasets import mini_imagenet
    assert mini_imagenet.pickle is pickle  # restored after the load
