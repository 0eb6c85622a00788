"""Bodies are registered by a BodySpec (bilevel_anil.models.registry): a body added from
outside the package is one spec and one register_body call, and then works end to end on the
command line (training, the checkpoint, load())."""
import pytest
import torch
from torch import nn

import bilevel_anil
from bilevel_anil.cli import main
from bilevel_anil.models import BODIES, BodySpec, image_model, register_body, smallest_image_size


def _tiny(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Conv2d(in_channels, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten()), 24


@pytest.fixture
def tiny_body():
    spec = register_body(BodySpec("tiny-test", "a test body", body=_tiny, min_image_size=12))
    yield spec
    BODIES.pop("tiny-test")


def test_a_registered_body_trains_saves_and_loads(tiny_body, drawn_omniglot_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--arch", "tiny-test", "--data-root", str(drawn_omniglot_root), "--out", str(out),
                 "--iterations", "2", "--val-every", "2", "--meta-batch", "2", "--val-tasks", "4",
                 "--test-tasks", "4", "--test-queries", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "network: tiny-test (generic per-task path" in printed
    assert "parameters: 197 total, 197 meta-trained, 12 BatchNorm" in printed  # conv 6*9+6, BN 12, head 24*5+5
    model = bilevel_anil.load(out / "best.pt")
    logits = model.adapt_and_predict(torch.rand(5, 1, 28, 28), torch.arange(5), torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()


def test_the_spec_is_what_the_checks_read(tiny_body, capsys):
    assert smallest_image_size("tiny-test") == 12
    assert main(["--arch", "tiny-test", "--image-size", "10", "--out", "unused"]) == 2
    assert "--image-size must be at least 12 pixels for tiny-test" in capsys.readouterr().err
    assert main(["--arch", "tiny-test", "--bn", "running", "--out", "unused"]) == 2
    assert "--bn running is not available on tiny-test, which supports batch" in capsys.readouterr().err
    assert "tiny-test" in " ".join(__import__("bilevel_anil.cli", fromlist=["x"]).build_parser().format_help().split())


def test_conv4_32_now_offers_running_statistics_as_conv4_does():
    model = image_model("conv4-32", 5, bn="running")
    assert model.body[0].bn.track_running_stats and model.body[0].conv.out_channels == 32


def test_spec_contracts_are_one_line_errors():
    with pytest.raises(ValueError, match="give exactly one of body="):
        BodySpec("x", "neither")
    with pytest.raises(ValueError, match="give exactly one of body="):
        BodySpec("x", "both", body=_tiny, network=lambda *a: None)
    with pytest.raises(ValueError, match="already registered"):
        register_body(BodySpec("conv4", "a clash", body=_tiny))
    with pytest.raises(TypeError, match="takes a BodySpec"):
        register_body(_tiny)
    with pytest.raises(ValueError, match="unknown architecture 'resnet7'"):
        image_model("resnet7", 5)
    with pytest.raises(ValueError, match="resnet12 supports BatchNorm mode 'batch' only"):
        image_model("resnet12", 5, bn="running")


def test_a_body_whose_features_differ_from_its_spec_is_one_line_before_training(drawn_omniglot_root, tmp_path,
                                                                                 capsys):
    wrong = BodySpec("wrong-test", "says 99 features, gives 4",
                     body=lambda c, s: (nn.Sequential(nn.Conv2d(c, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 99))
    register_body(wrong)
    try:
        assert main(["--arch", "wrong-test", "--data-root", str(drawn_omniglot_root), "--out", str(tmp_path / "r"),
                     "--iterations", "1", "--meta-batch", "2", "--val-tasks", "2", "--test-tasks", "2"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "body 'wrong-test' gives features of shape (4,) for 1x28x28 inputs, but its " \
                                          "builder said 99" in err
        with pytest.raises(ValueError, match=r"body 'tiny-pool' does not run on 1x8x8 inputs"):
            BodySpec("tiny-pool", "pools too often", body=lambda c, s: (nn.Sequential(
                nn.Conv2d(c, 4, 5), nn.Conv2d(4, 4, 5), nn.Flatten()), 4)).build(5, 1, 8)
    finally:
        BODIES.pop("wrong-test")
