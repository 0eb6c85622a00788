"""Loading Omniglot (the real copy, or the drawn one without it), the meta-splits, and episode sampling."""
import random

import torch

from bilevel_anil.data import ClassificationTasks, fixed_tasks
from bilevel_anil.data import omniglot as og
from omniglot_fixture import expected_counts


def test_standard_splits(omniglot, omniglot_counts):
    train, val, test = omniglot["train"], omniglot["val"], omniglot["test"]
    assert {"train": len(train.classes), "val": len(val.classes), "test": len(test.classes)} == omniglot_counts
    assert not set(train.classes) & set(val.classes)
    assert {c.split("/")[0] for c in test.classes}.isdisjoint({c.split("/")[0] for c in train.classes + val.classes})
    for split in (train, val, test):
        assert split.images.shape[1:] == (1, 28, 28)
        assert split.images_per_class() == 20 and len(split.labels) == 20 * len(split.classes)
        assert 0.0 <= split.images.min() and split.images.max() <= 1.0
    # strokes are 1 and paper 0: most pixels are background
    assert train.images.mean() < 0.2


def test_drawn_copy_loads_through_the_real_code(drawn_omniglot_root):
    splits = og.load_omniglot(drawn_omniglot_root, download=False)
    assert {name: len(split.classes) for name, split in splits.items()} == expected_counts()
    images = splits["train"].images
    assert images.shape[1:] == (1, 28, 28) and splits["train"].images_per_class() == 20
    assert 0.01 < images.mean() < 0.2  # ink on paper, like the real characters
    # the drawings of one character differ from each other, and less than from other characters
    first, second = images[splits["train"].labels == 0], images[splits["train"].labels == 1]
    within = (first[:10] - first[10:]).abs().mean()
    between = (first[:10] - second[:10]).abs().mean()
    assert 0 < within < between


def test_decoded_pixels_are_cached(omniglot_root, tmp_path, monkeypatch):
    monkeypatch.setenv("BILEVEL_ANIL_CACHE", str(tmp_path))
    base = og.locate(omniglot_root, download=False)
    first = og.load_split(base, "evaluation")
    assert len(list(tmp_path.glob("omniglot-images_evaluation-*.npz"))) == 1
    monkeypatch.setattr(og, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("PNG decoded again")))
    second = og.load_split(base, "evaluation")
    assert torch.equal(first.images, second.images)


def test_episode_shapes_labels_and_disjoint_sets(omniglot):
    data = omniglot["train"]
    class_of = {img.numpy().tobytes(): int(c) for img, c in zip(data.images, data.labels)}
    tasks = ClassificationTasks(data, ways=5, shots=2, queries=3)
    batch = tasks.sample(4)
    assert batch.support.x.shape == (4, 10, 1, 28, 28) and batch.query.x.shape == (4, 15, 1, 28, 28)
    assert torch.equal(batch.support.y[0], torch.arange(5).repeat_interleave(2))
    assert torch.equal(batch.query.y[0], torch.arange(5).repeat_interleave(3))
    for b in range(4):
        support = [img.numpy().tobytes() for img in batch.support.x[b]]
        query = [img.numpy().tobytes() for img in batch.query.x[b]]
        assert not set(support) & set(query)  # no image is both a support and a query example
        classes = {}
        for img, label in zip(support + query, batch.support.y[b].tolist() + batch.query.y[b].tolist()):
            classes.setdefault(label, set()).add(class_of[img])
        assert all(len(c) == 1 for c in classes.values())  # one label, one character
        assert len({c.pop() for c in classes.values()}) == 5  # five different characters


def test_rotations_are_quarter_turns_shared_by_a_class(omniglot):
    random.seed(3)
    rotated = ClassificationTasks(omniglot["train"], ways=5, shots=4, queries=0, rotate=True)
    data = omniglot["train"].images
    index = {tuple(img.flatten().tolist()): i for i, img in enumerate(data)}
    turned = 0
    for _ in range(5):
        batch = rotated.sample(1)
        for c in range(5):
            turns = set()
            for img in batch.support.x[0, 4 * c:4 * c + 4]:
                found = [k for k in range(4) if tuple(torch.rot90(img, -k, dims=(-2, -1)).flatten().tolist()) in index]
                assert found, "an image is not a quarter turn of a data set image"
                turns.add(found[0])
            assert len(turns) == 1
            turned += turns.pop() != 0
    assert turned > 0


def test_fixed_tasks_are_reproducible_and_leave_training_draws_alone(omniglot):
    tasks = ClassificationTasks(omniglot["val"], ways=5, shots=1, queries=2)
    random.seed(7)
    expected_next = random.random()
    random.seed(7)
    a = fixed_tasks(tasks, 10, seed=1)
    assert random.random() == expected_next
    b = fixed_tasks(tasks, 10, seed=1)
    assert torch.equal(a.support.x, b.support.x) and torch.equal(a.query.x, b.query.x)
    c = fixed_tasks(tasks, 10, seed=2)
    assert not torch.equal(a.support.x, c.support.x)
