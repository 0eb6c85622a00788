"""--preset: a paper's protocol in one flag; explicit flags override it; every preset is valid."""
import pytest

from bilevel_anil.cli import build_parser, parse_config, resolve_config
from bilevel_anil.errors import UsageError
from bilevel_anil.recipes.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_to_a_valid_run(name):
    cfg = resolve_config(parse_config(["--preset", name]))
    for field, value in PRESETS[name].values.items():
        assert getattr(cfg, field) == value, field
    assert PRESETS[name].source


def test_explicit_flags_override_the_preset():
    cfg = parse_config(["--preset", "maml-omniglot-20w1s", "--meta-batch", "4", "--problem", "anil"])
    assert (cfg.problem, cfg.meta_batch, cfg.ways, cfg.inner_steps, cfg.inner_lr) == ("anil", 4, 20, 5, 0.1)
    # an explicit value equal to the parser's default still counts as explicit
    cfg = parse_config(["--preset", "imaml-omniglot-5w1s", "--lam", "2.0", "--test-tasks", "600"])
    assert cfg.lam == 2.0 and cfg.test_lam == 0.0


def test_unknown_preset_is_one_line():
    with pytest.raises(UsageError, match="unknown --preset 'maml-imagenet'"):
        parse_config(["--preset", "maml-imagenet"])


def test_help_lists_the_presets():
    text = "".join(build_parser().format_help().split())  # argparse wraps lines at hyphens
    for name in PRESETS:
        assert name in text


def test_reptile_gets_its_papers_settings_by_default():
    cfg = resolve_config(parse_config(["--problem", "reptile"]))
    assert (cfg.arch, cfg.train_shots, cfg.inner_batch, cfg.inner_optimizer, cfg.meta_lr, cfg.test_inner_steps) == \
        ("conv4-strided", 10, 10, "adam", 1.0, 50)
    sine = resolve_config(parse_config(["--problem", "reptile", "--dataset", "sine"]))
    assert (sine.inner_optimizer, sine.train_shots, sine.inner_lr) == ("sgd", 50, 0.02)


def test_a_preset_key_that_is_not_a_run_setting_is_an_error():
    """A typo in a preset was stored silently as an attribute and changed nothing."""
    from bilevel_anil.cli import apply_preset
    from bilevel_anil.recipes.run_config import RunConfig
    from bilevel_anil.errors import UsageError
    from bilevel_anil.recipes.presets import PRESETS, Preset

    typo = {"typo": Preset("a test", {"ways": 5, "inner_lrr": 0.1})}
    with pytest.raises(UsageError, match="preset typo sets 'inner_lrr', which is not a run setting"):
        apply_preset(RunConfig(preset="typo"), set(), typo)
    for name in PRESETS:  # every shipped preset names real fields, and applying one returns a new config
        cfg = RunConfig(preset=name)
        applied = apply_preset(cfg, set())
        assert applied is not cfg and cfg.meta_batch is None
