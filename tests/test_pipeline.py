"""The pretrain → meta-train → fine-tune pipeline and its parts: the nearest-centroid rules,
pretraining's augmentations and budget, test-time fine-tuning against plain autograd, and the
command end to end on the drawn Omniglot."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from bilevel_anil.cli import main
from bilevel_anil.data.class_images import ClassImages
from bilevel_anil.errors import UsageError
from bilevel_anil.recipes.nearest_centroid import ALL_RULES, CentroidRule, centroid_predictions, transform
from bilevel_anil.data.augment import augmented_copies, crop_and_flip, rotate_classes
from bilevel_anil.recipes.pretrain_body import BodyPretrainConfig, pretrain_body

from helpers import random_episodes
from test_cli_errors import assert_one_line_error, run_main


# --- nearest centroid ---------------------------------------------------------------------
def test_rules_on_hand_made_features():
    """Two classes whose centroids are (10, 0) and (1, 1): the query (2, 0.3) is nearer to (1, 1)
    in Euclidean distance but points along (10, 0): cosine takes class 0. Centred at (5, 5) the
    picture changes again: (2, .3) - c = (-3, -4.7) is closer in angle to (1,1) - c = (-4, -4)."""
    support = torch.tensor([[[10., 0.], [1., 1.]]])
    y = torch.tensor([[0, 1]])
    query = torch.tensor([[[2., 0.3]]])
    centre = torch.tensor([5., 5.])
    got = {r.name: centroid_predictions(support, y, query, 2, r, centre).item() for r in ALL_RULES}
    assert got == {"euclidean": 1, "cosine": 0, "euclidean/l2": 0, "cosine/l2": 0,
                   "euclidean/centred-l2": 1, "cosine/centred-l2": 1}


def test_centroids_average_the_shots_and_transforms_are_as_defined():
    support = torch.tensor([[[0., 0.], [2., 0.], [10., 10.], [10., 12.]]])
    y = torch.tensor([[0, 0, 1, 1]])
    # the mean of class 0 is (1, 0): (1.2, 0) is nearest to it, though nearer to (2, 0) than to (0, 0)
    assert centroid_predictions(support, y, torch.tensor([[[1.2, 0.], [9., 11.]]]), 2, CentroidRule()).tolist() \
        == [[0, 1]]
    f = torch.tensor([[3., 4.]])
    assert torch.allclose(transform(f, "l2"), torch.tensor([[0.6, 0.8]]))
    assert torch.allclose(transform(f, "centred-l2", torch.tensor([3., 0.])), torch.tensor([[0., 1.]]))
    with pytest.raises(UsageError, match="needs the training images' mean"):
        transform(f, "centred-l2")
    assert CentroidRule.parse("cosine/centred-l2") == CentroidRule("cosine", "centred-l2")
    with pytest.raises(UsageError, match="unknown distance 'manhattan'"):
        CentroidRule("manhattan")


# --- pretraining ------------------------------------------------------------------------
def test_rotations_are_classes_of_their_own():
    x = torch.arange(2 * 9, dtype=torch.float32).view(2, 1, 3, 3)
    y = torch.tensor([5, 7])
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        rx, ry = rotate_classes(x, y, g)
        for i in range(2):
            turns = int(ry[i]) % 4
            assert int(ry[i]) // 4 == int(y[i])
            assert torch.equal(torch.rot90(rx[i], -turns, dims=(-2, -1)), x[i])
            seen.add(turns)
    assert seen == {0, 1, 2, 3}


def test_crop_and_flip_takes_a_window_of_the_padded_image():
    x = torch.rand(6, 3, 8, 8)
    g = torch.Generator().manual_seed(1)
    out = crop_and_flip(x, g)
    padded = F.pad(x, (1, 1, 1, 1))
    flips = 0
    for i in range(6):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(3) for c in range(3)]
        plain = any(torch.equal(out[i], w) for w in windows)
        mirrored = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 0 < flips < 6


def synthetic(classes: int, per_class: int, size: int, seed: int, channels: int = 1) -> ClassImages:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(classes, channels, size, size, generator=g)
    images = prototypes.repeat_interleave(per_class, 0) + 0.2 * torch.rand(classes * per_class, channels, size, size,
                                                                           generator=g)
    return ClassImages(images, torch.arange(classes).repeat_interleave(per_class), [f"c{i}" for i in range(classes)])


@pytest.mark.parametrize("arch, size", [("conv4", 28), ("conv4-32", 28), ("conv4-strided", 28), ("resnet12", 16),
                                        ("resnet18", 16)])
def test_every_body_pretrains_and_reports_each_epoch(tmp_path, arch, size):
    from bilevel_anil.models import image_model
    from bilevel_anil.training.pretrained import load_pretrained

    splits = {"train": synthetic(8, 8, size, 0), "val": synthetic(6, 6, size, 1)}
    cfg = BodyPretrainConfig(arch=arch, image_size=size, epochs=2, batch_size=16, val_tasks=6, test_queries=3,
                             ways=3, out=str(tmp_path / "body.pt"), progress=False)
    record = pretrain_body(cfg, splits)
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    for h in record["history"]:
        assert h["seconds"] > 0 and set(h["rules"]) == {r.name for r in ALL_RULES}
        assert h["val_accuracy"] == max(h["rules"].values()) and h["rule"] in h["rules"]
    saved = torch.load(tmp_path / "body.pt", weights_only=True)
    assert saved["rule"] == record["rule"] and saved["centre"].dim() == 1
    model = image_model(arch, 3, image_size=size)
    assert "weights from" in load_pretrained(model, str(tmp_path / "body.pt"))


def test_colour_images_are_augmented_and_the_budget_stops_mid_epoch(tmp_path, capsys):
    splits = {"train": synthetic(8, 40, 16, 0, channels=3), "val": synthetic(6, 6, 16, 1, channels=3)}
    cfg = BodyPretrainConfig(arch="conv4", dataset="folder", image_size=16, time_budget=0.01, batch_size=8,
                             val_tasks=4, test_queries=2, ways=3, out=str(tmp_path / "b.pt"), progress=False)
    record = pretrain_body(cfg, splits)
    out = capsys.readouterr().out
    assert "crops and flips" in out and "rotations" not in out
    assert len(record["history"]) == 1 and record["history"][0]["images"] < 8 * 40
    assert "stopped by --time-budget" in out


# --- fine-tuning ------------------------------------------------------------------------
def test_fine_tuning_the_whole_network_matches_plain_autograd():
    """FineTune('all', k, lr) on an ANIL learner with a prototype head: each task's adapted
    weights equal a plain functional_call + autograd SGD loop's from the same start (float64,
    relative 1e-10), and so do the query accuracies."""
    from bilevel_anil import MetaLearner
    from bilevel_anil.recipes.fine_tune import FineTune, fine_tune_learner, score_fine_tunes
    from bilevel_anil.core.learner import prototype_head
    from bilevel_anil.models import Conv4

    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=8).double()
    meta = MetaLearner(model, "anil", head_init="prototypes", inner_lr=0.3)
    batch = random_episodes(4, 3, 2, 3, seed=3)
    batch = type(batch)(type(batch.support)(batch.support.x.double(), batch.support.y),
                        type(batch.query)(batch.query.x.double(), batch.query.y))
    theta = dict(model.named_parameters())
    option = FineTune("all", 2, 0.05)
    got = score_fine_tunes(meta.test_learner, theta, batch, [option])[option]
    with torch.no_grad():
        fast = fine_tune_learner(meta.test_learner, "all").adapt(theta, batch.support.x, batch.support.y, 2, 0.05)
    want = []
    model.eval()
    for t in range(4):
        sx, sy, qx, qy = batch.support.x[t], batch.support.y[t], batch.query.x[t], batch.query.y[t]
        params = {n: p.detach().clone() for n, p in theta.items()}
        features = functional_call(model.body, {n[5:]: p for n, p in params.items() if n.startswith("body.")}, (sx,))
        w, b = prototype_head(features.unsqueeze(0), sy.unsqueeze(0), 3)
        params["head.weight"], params["head.bias"] = w[0], b[0]
        for _ in range(2):
            params = {n: p.requires_grad_() for n, p in params.items()}
            loss = F.cross_entropy(functional_call(model, params, (sx,)), sy)
            grads = torch.autograd.grad(loss, list(params.values()))
            params = {n: (p - 0.05 * g).detach() for (n, p), g in zip(params.items(), grads)}
        assert sorted(fast) == sorted(params)
        for n, p in params.items():
            assert torch.allclose(fast[n][t], p, rtol=1e-10, atol=1e-12), n
        want.append((functional_call(model, params, (qx,)).argmax(-1) == qy).double().mean())
    assert got.mean == pytest.approx(torch.stack(want).mean().item(), abs=1e-6)  # scores are float32


def test_the_grid_and_the_choice():
    from bilevel_anil import MetaLearner
    from bilevel_anil.recipes.fine_tune import FineTune, choose_fine_tune, fine_tune_grid
    from bilevel_anil.models import Conv4

    grid = fine_tune_grid(0.4, 1)
    assert FineTune("head", 0, 0.4) in grid and FineTune("all", 4, 0.04) in grid and len(set(grid)) == len(grid)
    torch.manual_seed(0)
    meta = MetaLearner(Conv4(ways=3, hidden=8), "anil", inner_lr=0.4)
    batch = random_episodes(4, 3, 1, 2, seed=1)
    chosen, scores = choose_fine_tune(meta, batch, grid)
    assert set(scores) == set(grid) and scores[chosen].mean == max(v.mean for v in scores.values())
    _, default = choose_fine_tune(meta, batch)  # the pipeline's grid for this learner
    assert set(default) == set(fine_tune_grid(0.4, 1))
    with pytest.raises(UsageError, match="learner must be a MetaLearner"):
        choose_fine_tune(meta.test_learner, batch, grid)
    with pytest.raises(UsageError, match="options is empty"):
        choose_fine_tune(meta, batch, [])
    # a loss: the lowest wins
    from bilevel_anil import TaskBatch
    net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(4, 10, 1)
    regression = TaskBatch.of(x[:, :5], 2 * x[:, :5], x[:, 5:], 2 * x[:, 5:])
    options = [FineTune("all", 0, 0.1), FineTune("all", 20, 0.1)]
    chosen, scores = choose_fine_tune(MetaLearner(net, "maml", loss="mse", inner_lr=0.1), regression, options)
    assert scores[chosen].mean == min(v.mean for v in scores.values()) and chosen == options[1]
    with pytest.raises(UsageError, match="fine-tuning params must be one of head, all"):
        FineTune("body", 1, 0.1)


# --- the command ------------------------------------------------------------------------
def test_pipeline_end_to_end_on_the_drawn_omniglot(drawn_omniglot_root, tmp_path, capsys):
    from bilevel_anil import load

    out = tmp_path / "pipe"
    code = main(["pipeline", "--data-root", str(drawn_omniglot_root), "--ways", "3", "--time-budget", "12",
                 "--pretrain-share", "0.5", "--val-tasks", "6", "--test-tasks", "8", "--out", str(out),
                 "--no-progress", "--problem", "anil"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "pipeline.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["pretraining only", "+ meta-training", "+ fine-tuning"]
    for s in report["stages"]:
        assert 0 <= s["test"]["mean"] <= 1 and s["test"]["tasks"] == 8
    assert (out / "accuracy_vs_time.png").stat().st_size > 0 and (out / "pretrain" / "body.pt").is_file()
    assert "| + fine-tuning |" in (out / "report.md").read_text()
    assert report["curves"]["pretraining (nearest centroid)"]
    model = load(out / "meta" / "best.pt")
    assert model.learner.head_init == "prototypes"


@pytest.mark.parametrize("args, fragment", [
    (["--time-budget", "0"], "--time-budget must be a positive number of seconds"),
    (["--time-budget", "nan"], "--time-budget must be a positive number of seconds"),
    (["--time-budget", "soon"], "invalid float value: 'soon'"),
    (["--pretrain-share", "1"], "--pretrain-share must be a fraction in [0, 1)"),
    (["--pretrain-share", "-0.2"], "--pretrain-share must be a fraction in [0, 1)"),
    (["--preset", "omniglot-1000w"], "unknown --preset 'omniglot-1000w'"),
    (["--problem", "matchingnet"], "unknown --problem 'matchingnet'"),
    (["--head-init", "random"], "unknown --head-init 'random'"),
    (["--problem", "reptile", "--head-init", "zero"], "add --head-init learned"),
    (["--fine-tune", "always"], "--fine-tune must be choose or none"),
    (["--arch", "vgg99"], "unknown --arch 'vgg99'"),
    (["--dataset", "sine"], "--dataset 'sine' cannot be pretrained on"),
    (["--ways", "0"], "--ways must be a positive integer"),
])
def test_pipeline_bad_settings_are_one_line(capsys, args, fragment):
    assert_one_line_error(*run_main(capsys, "pipeline", *args), fragment)


def test_pipeline_refuses_a_used_folder(capsys, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text("{}")
    assert_one_line_error(*run_main(capsys, "pipeline", "--out", str(tmp_path / "old")), "is not empty")


@pytest.mark.parametrize("args, fragment", [
    (["--time-budget", "0"], "--time-budget must be a positive number"),
    (["--time-budget", "inf"], "--time-budget must be a positive number"),
    (["--schedule", "step"], "unknown --schedule 'step'"),
    (["--weight-decay", "-1"], "--weight-decay must be a number >= 0"),
    (["--dataset", "sine"], "--dataset 'sine' cannot be pretrained on"),
    (["--channels", "2"], "--channels must be 1 (grey) or 3 (RGB)"),
    (["--dataset", "cifar-fs", "--image-size", "40"], "--image-size does not apply to cifar-fs"),
    (["--epochs", "0"], "--epochs must be a positive integer"),
])
def test_pretrain_body_bad_settings_are_one_line(capsys, args, fragment):
    assert_one_line_error(*run_main(capsys, "pretrain-body", *args), fragment)


def test_pretrain_body_folder_without_a_data_root_is_one_line(capsys):
    assert_one_line_error(*run_main(capsys, "pretrain-body", "--dataset", "folder", "--arch", "conv4"),
                          "--dataset folder needs --data-root DIR")


def test_augmented_copies_keep_labels_and_shift_grey_images_without_mirroring():
    x = torch.rand(2, 3, 1, 8, 8)
    y = torch.tensor([[0, 1, 2], [2, 0, 1]])
    ax, ay = augmented_copies(x, y, 2, torch.Generator().manual_seed(0))
    assert ax.shape == (2, 9, 1, 8, 8) and torch.equal(ax[:, :3], x) and torch.equal(ay, y.repeat(1, 3))
    padded = F.pad(x.reshape(6, 1, 8, 8), (1, 1, 1, 1)).view(2, 3, 1, 10, 10)
    for t in range(2):
        for i in range(3, 9):
            source = padded[t, i % 3]
            assert any(torch.equal(ax[t, i], source[:, r:r + 8, c:c + 8]) for r in range(3) for c in range(3))


def test_copies_change_the_support_set_the_option_adapts_on():
    """FineTune with copies scores the same as fine-tuning on the task batch with the copies
    appended by hand (the same seed)."""
    from bilevel_anil import MetaLearner
    from bilevel_anil.core.tasks import TaskBatch, TaskSet
    from bilevel_anil.core.evaluation import evaluate
    from bilevel_anil.recipes.fine_tune import FineTune, fine_tune_learner, score_fine_tunes
    from bilevel_anil.models import Conv4

    torch.manual_seed(0)
    meta = MetaLearner(Conv4(ways=3, hidden=8), "anil", head_init="prototypes", inner_lr=0.2)
    batch = random_episodes(3, 3, 1, 2, seed=4)
    theta = meta.learner.meta_params()
    option = FineTune("all", 2, 0.02, copies=3)
    got = score_fine_tunes(meta.test_learner, theta, batch, [option], seed=7)[option]
    x, y = augmented_copies(batch.support.x, batch.support.y, 3, torch.Generator().manual_seed(7))
    want = evaluate(fine_tune_learner(meta.test_learner, "all"), theta, TaskBatch(TaskSet(x, y), batch.query), [2],
                    0.02)[2]
    assert got == want
    with pytest.raises(UsageError, match="copies must be an integer >= 0"):
        FineTune("all", 1, 0.1, copies=-1)


def test_the_deadline_reserves_the_time_of_a_validation(monkeypatch):
    """Steps of 1 s, a validation that takes 5 s more: once it has been seen, the callback
    stops the fit 5 s before the deadline (so the validation it triggers ends in time)."""
    from bilevel_anil.training.callbacks import StepInfo
    from bilevel_anil.recipes import pipeline

    clock = iter([0.0, 1.0, 2.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0])
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: next(clock))
    deadline = pipeline.Deadline(start=0.0, deadline=15.0)
    stops = [deadline(StepInfo(step=s, steps=99, train_loss=1.0, val_score=0.5 if s == 4 else None))
             for s in range(1, 11)]
    assert deadline.curve == [(8.0, 0.5)] and deadline.budget.reserve == pytest.approx(5.0)
    assert stops.index(True) == 5  # at 10 s: 10 + 5 >= 15


def test_pipeline_on_colour_images_augments_and_checks_the_batch(tmp_path, capsys):
    """CIFAR-FS fixtures (3 channels, 32 pixels): pretraining crops and flips, every stage runs;
    a pretraining batch larger than the training split is one line naming the pipeline's flag."""
    from natural_fixtures import write_fixture

    root = write_fixture("cifar-fs", tmp_path / "cifar")
    common = ["pipeline", "--dataset", "cifar-fs", "--data-root", str(root), "--ways", "3", "--time-budget", "8",
              "--val-tasks", "3", "--test-tasks", "3", "--test-queries", "2", "--queries", "2", "--no-progress",
              "--no-download"]
    assert_one_line_error(*run_main(capsys, *common, "--out", str(tmp_path / "a")),
                          "--pretrain-batch-size 128 is larger than the 48 training images")
    assert main([*common, "--pretrain-batch-size", "16", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "crops and flips" in out and "3-way 1-shot" in out
    report = json.loads((tmp_path / "b" / "pipeline.json").read_text())
    assert len(report["stages"]) == 3 and report["config"]["dataset"] == "cifar-fs"


def test_a_pipeline_that_cannot_read_its_data_leaves_no_folder(capsys, tmp_path):
    out = tmp_path / "new"
    assert_one_line_error(*run_main(capsys, "pipeline", "--data-root", str(tmp_path / "missing"), "--out", str(out),
                                    "--no-download"), "does not exist")
    assert not out.exists()
    assert_one_line_error(*run_main(capsys, "pipeline", "--dataset", "folder", "--out", str(out)),
                          "--dataset folder needs --data-root DIR")
    assert_one_line_error(*run_main(capsys, "pipeline", "--problem", "reptile"), "add --head-init learned")
