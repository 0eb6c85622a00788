"""Bodies: ResNet-18 through the generic per-task path, pretrained weights, --train-body.

Meta-gradient tolerance: relative L2 error ≤ 1e-5 against plain torch.autograd one task at a
time through the network's ordinary forward, both sides in float32.
"""
import copy

import pytest
import torch

from bilevel_anil.core.algorithms import ALGORITHMS
from bilevel_anil.data.omniglot import ClassImages
from bilevel_anil.errors import UsageError
from bilevel_anil.core.learner import Learner
from bilevel_anil.models import (Conv4, TaskBatchedNet, batch_norm_parameters, generic_path, image_model,
                                 parameter_counts, set_meta_trained)
from bilevel_anil.training.pretrained import load_pretrained

from helpers import build_engine, random_episodes, reference_meta_gradient, relative_error

TOL = 1e-5
SMALL = (1, 16, 16)  # ResNet-18 on 16x16 inputs: every stage runs, the test stays fast


def resnet(ways=5, image_size=16):
    torch.manual_seed(0)
    return image_model("resnet18", ways, image_size=image_size)


def test_resnet18_sizes_match_the_notes():
    model = image_model("resnet18", 5)
    assert isinstance(model, TaskBatchedNet)
    counts = parameter_counts(model)
    assert counts == {"total": 11_172_805, "meta_trained": 11_172_805, "batchnorm": 9_600}
    set_meta_trained(model, "bn")
    assert parameter_counts(model)["meta_trained"] == 9_600 + 512 * 5 + 5
    set_meta_trained(model, "none")
    assert parameter_counts(model)["meta_trained"] == 512 * 5 + 5
    assert model.body.conv1.in_channels == 1 and model.head.in_features == 512


@pytest.mark.parametrize("name, train_body, steps, lr, dtype, tol", [
    ("anil", "all", 2, 0.1, torch.float32, TOL),
    ("anil", "bn", 2, 0.1, torch.float32, TOL),
    ("foanil", "bn", 2, 0.1, torch.float32, TOL),
    ("maml", "all", 1, 0.01, torch.float32, TOL),
    ("maml", "all", 2, 0.1, torch.float64, 1e-10),
])
def test_resnet_meta_gradient_matches_autograd_reference(name, train_body, steps, lr, dtype, tol, tmp_path):
    """anil: shared body, features once per set; maml: per-task fast weights for all 11M
    parameters through vmap; bn: only BatchNorm and head parameters are meta-trained.

    maml adapts every BatchNorm layer of a task whose deepest feature maps are 1x1 over ten
    images: the meta-gradient is ill-conditioned (entries up to ~1e2 after two steps at lr
    0.1), so float32 rounding in the two (mathematically equal) computations separates them by
    up to 25%. Hence float32 with one step at lr 0.01 (well conditioned) and float64 (1e-10)
    for two steps at lr 0.1."""
    torch.manual_seed(0)
    model = image_model("resnet18", 5, image_size=32).to(dtype)
    set_meta_trained(model, train_body)
    reference_model = copy.deepcopy(model)
    batch = random_episodes(tasks=2, ways=5, shots=2, queries=2, shape=(1, 32, 32))
    batch.support.x, batch.query.x = batch.support.x.to(dtype), batch.query.x.to(dtype)
    engine = build_engine(Learner(model, ALGORITHMS[name]), batch, steps, inner_lr=lr, tmp=tmp_path)
    engine.train_step()
    want = reference_meta_gradient(reference_model, ALGORITHMS[name], batch, steps, inner_lr=lr)
    assert len(engine.upper.last_grads) == len(want)
    assert relative_error(engine.upper.last_grads, want) <= tol


def test_each_task_is_normalised_with_its_own_statistics():
    """The generic path equals a Python loop over tasks of the ordinary forward (per-task
    BatchNorm statistics), for shared and for per-task parameters (float64, 1e-10)."""
    model = resnet().double()
    x = torch.rand(3, 4, *SMALL, dtype=torch.float64)
    theta = dict(model.named_parameters())
    loop = torch.stack([model.body(x[b]) for b in range(3)])
    torch.testing.assert_close(model.body_forward(theta, x), loop, rtol=1e-10, atol=1e-10)
    fast = {n: p.unsqueeze(0).expand(3, *p.shape) for n, p in theta.items()}
    torch.testing.assert_close(model.body_forward({**theta, **fast}, x), loop, rtol=1e-10, atol=1e-10)
    alone = model.body(x[0])[:2]
    among_others = model.body(torch.cat([x[0, :2], x[1, :2]]))[:2]
    assert not torch.allclose(alone, among_others, atol=1e-4)  # the statistics depend on the set


def test_generic_path_equals_the_hand_written_conv4():
    torch.manual_seed(0)
    conv4 = Conv4(ways=5, hidden=16)
    generic = generic_path(conv4)
    x = torch.rand(3, 5, 1, 28, 28)
    theta = dict(conv4.named_parameters())
    torch.testing.assert_close(generic.body_forward(theta, x), conv4.body_forward(theta, x), rtol=1e-5, atol=1e-5)
    fast = {n: p.unsqueeze(0).expand(3, *p.shape) + 0.01 * torch.randn(3, *p.shape) for n, p in theta.items()}
    torch.testing.assert_close(generic.body_forward(fast, x), conv4.body_forward(fast, x), rtol=1e-4, atol=1e-5)


def test_frozen_tensors_are_bit_identical_after_training(tmp_path):
    model = resnet()
    set_meta_trained(model, "bn")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = random_episodes(tasks=2, ways=5, shots=1, queries=2, shape=SMALL)
    engine = build_engine(Learner(model, ALGORITHMS["foanil"]), batch, 1, inner_lr=0.1, tmp=tmp_path, meta_lr=0.01)
    for _ in range(3):
        engine.train_step()
    bn = set(batch_norm_parameters(model))
    after = dict(model.named_parameters())
    frozen = [n for n in before if n.startswith("body.") and n not in bn]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(not torch.equal(before[n], after[n]) for n in bn | {"head.weight", "head.bias"})


def test_train_body_none_freezes_every_body_tensor(tmp_path):
    model = Conv4(ways=5, hidden=8)
    set_meta_trained(model, "none")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    engine = build_engine(Learner(model, ALGORITHMS["anil"]), random_episodes(2, 5, 1, 1), 1, 0.4, tmp_path)
    engine.train_step()
    assert all(torch.equal(before[n], p) == n.startswith("body.") for n, p in model.named_parameters())


# pretrained weights -----------------------------------------------------------------------
def torchvision_state(in_channels=3):
    import torchvision

    torch.manual_seed(1)
    net = torchvision.models.resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return net.state_dict()


def test_torchvision_checkpoint_loads_with_rgb_kernels_summed(tmp_path):
    state = torchvision_state()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = resnet()
    note = load_pretrained(model, str(path))
    assert "conv1.weight from the sum of its RGB kernels" in note and "running statistics not used" in note
    torch.testing.assert_close(model.body.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    # a grey image repeated in R, G, B gives the same first-layer output as the original kernels
    grey = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(torch.nn.functional.conv2d(grey, model.body.conv1.weight, stride=2, padding=3),
                               torch.nn.functional.conv2d(grey.expand(-1, 3, -1, -1), state["conv1.weight"],
                                                          stride=2, padding=3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module"])
def test_wrapped_state_dicts_load(wrap, tmp_path):
    state = torchvision_state(in_channels=1)
    data = {"plain": state, "state_dict": {"state_dict": state, "epoch": 3},
            "module": {f"module.{k}": v for k, v in state.items()}}[wrap]
    torch.save(data, tmp_path / "w.pt")
    model = resnet()
    load_pretrained(model, str(tmp_path / "w.pt"))
    assert torch.equal(model.body.conv1.weight, state["conv1.weight"])


def test_mismatched_files_name_the_first_mismatch(tmp_path):
    state = torchvision_state()
    torch.save({k: v for k, v in state.items() if k != "layer2.0.conv1.weight"}, tmp_path / "missing.pt")
    with pytest.raises(UsageError, match="has no 'layer2.0.conv1.weight'"):
        load_pretrained(resnet(), str(tmp_path / "missing.pt"))
    torch.save(Conv4(ways=5).state_dict(), tmp_path / "conv4.pt")
    with pytest.raises(UsageError, match="it is not a body of this architecture"):
        load_pretrained(resnet(), str(tmp_path / "conv4.pt"))
    torch.save({**state, "layer5.weight": torch.zeros(3)}, tmp_path / "extra.pt")
    with pytest.raises(UsageError, match="holds 'layer5.weight'"):
        load_pretrained(resnet(), str(tmp_path / "extra.pt"))
    bad = dict(state)
    bad["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(UsageError, match=r"'layer1.0.conv1.weight' has shape \(32, 64, 3, 3\)"):
        load_pretrained(resnet(), str(tmp_path / "shape.pt"))
    (tmp_path / "corrupt.pt").write_bytes(b"not a weights file")
    with pytest.raises(UsageError, match="cannot be read"):
        load_pretrained(resnet(), str(tmp_path / "corrupt.pt"))


def test_imagenet_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UsageError) as info:
        load_pretrained(resnet(), "imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message


def synthetic_classes(classes: int, per_class: int, size: int, seed: int) -> ClassImages:
    """Classes of noisy copies of one random prototype image each."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(classes, 1, size, size, generator=g)
    images = prototypes.repeat_interleave(per_class, 0) + 0.3 * torch.rand(classes * per_class, 1, size, size,
                                                                           generator=g)
    return ClassImages(images, torch.arange(classes).repeat_interleave(per_class), [f"c{i}" for i in range(classes)])


def test_pretrain_body_output_loads_with_the_same_features(tmp_path):
    from bilevel_anil.recipes.pretrain_body import BodyPretrainConfig, pretrain_body

    splits = {"train": synthetic_classes(16, 8, 16, 0), "val": synthetic_classes(8, 6, 16, 1)}
    cfg = BodyPretrainConfig(arch="resnet18", image_size=16, epochs=2, batch_size=32, val_tasks=10, test_queries=5,
                             out=str(tmp_path / "body.pt"), progress=False)
    record = pretrain_body(cfg, splits)
    assert record["path"] == str(tmp_path / "body.pt") and 0 <= record["val_accuracy"] <= 1
    saved = torch.load(tmp_path / "body.pt", weights_only=True)
    reference = resnet(ways=3)
    reference.body.load_state_dict(saved["body"])
    model = resnet(ways=3)
    note = load_pretrained(model, str(tmp_path / "body.pt"))
    assert note == f"weights from {tmp_path / 'body.pt'}"
    x = torch.rand(2, 6, *SMALL)
    theta = dict(model.named_parameters())
    assert torch.equal(model.body_forward(theta, x), reference.body_forward(dict(reference.named_parameters()), x))
    with pytest.raises(UsageError, match="holds a resnet18 body, not conv4"):
        load_pretrained(Conv4(ways=5), str(tmp_path / "body.pt"))


@pytest.mark.parametrize("arch", ["conv4", "conv4-32", "conv4-strided", "resnet12", "resnet18"])
def test_smallest_image_size_is_the_smallest_each_body_runs_on(arch):
    """MIN_IMAGE_SIZE against a forward of the task-batched network: the smallest size runs and
    gives finite logits; one pixel less fails (or the floor of 8 applies)."""
    import warnings

    from bilevel_anil.models import image_model, smallest_image_size

    def runs(size: int) -> bool:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = image_model(arch, 3, image_size=size)
                with torch.no_grad():
                    logits = model(torch.zeros(2, 1, size, size))
            return bool(torch.isfinite(logits).all())
        except (RuntimeError, ValueError):
            return False

    smallest = smallest_image_size(arch)
    assert runs(smallest)
    assert smallest == 8 or not runs(smallest - 1)


def test_a_parameter_outside_body_and_head_is_adapted_by_maml_through_the_generic_path():
    """A parameter outside body/head used to be left out of MAML's inner loop silently (its
    meta-gradient was wrong); now which parameters adapt follows from the head, whatever the
    names, and a network its hand-written forward does not cover runs the generic path."""
    from torch import nn

    from bilevel_anil.core.options import get_algorithm
    from bilevel_anil.core.learner import Learner
    from bilevel_anil.models import image_model

    model = image_model("conv4", 3)
    model.scale = nn.Parameter(torch.ones(1))
    learner = Learner(model, get_algorithm("maml"))
    assert "scale" in learner.adapted_names and not learner.fast_path
    assert Learner(image_model("conv4", 3), get_algorithm("anil")).fast_path
    headless = image_model("conv4", 3)
    headless.head = nn.Identity()
    with pytest.raises(ValueError, match="cannot tell which part of Conv4 is its head"):
        Learner(headless, get_algorithm("anil"))
