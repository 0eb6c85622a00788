"""Run settings are declared once (bilevel_anil.settings): the parsers, --help's defaults, the
shared flags of the sub-commands and the resume check all come from the dataclass fields."""
import argparse
import dataclasses

import pytest

from bilevel_anil import cli
from bilevel_anil.cli import compare_grads, pretrain_body as pretrain_body_cli, scenarios as scenarios_cli
from bilevel_anil.recipes import compare, pretrain_body, scenarios
from bilevel_anil.cli.argparsing import HelpFormatter
from bilevel_anil.recipes.run_config import RESUME_FIELDS, VALIDATION_FIELDS, RunConfig, resolve_config
from bilevel_anil.settings import build_parser, explicit_fields, setting, shared

COMMANDS = {"run": cli.build_parser, "compare-grads": compare_grads.build_parser,
            "pretrain-body": pretrain_body_cli.build_parser, "scenarios": scenarios_cli.build_parser}
CONFIGS = {"run": RunConfig, "compare-grads": compare.CompareConfig,
           "pretrain-body": pretrain_body.BodyPretrainConfig, "scenarios": scenarios.ScenarioConfig}


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_field_is_a_flag_with_the_fields_default(command):
    cls, parser = CONFIGS[command], COMMANDS[command]()
    actions = _actions(parser)
    assert set(actions) == {f.name for f in dataclasses.fields(cls)}
    # parsing no flags gives the dataclass's own defaults
    assert cls(**vars(parser.parse_args([]))) == cls()


def test_shared_flags_are_the_same_in_every_command():
    seen: dict[str, tuple] = {}
    for command, build in COMMANDS.items():
        for dest, action in _actions(build()).items():
            field = {f.name: f for f in dataclasses.fields(CONFIGS[command])}[dest]
            if field.metadata.get("shared"):
                key = (tuple(action.option_strings), action.default, action.help, action.metavar, action.type)
                assert seen.setdefault(dest, key) == key, f"{dest} differs in {command}"
    # every command has the device, seed and output flags
    assert {"data_root", "download", "seed", "device", "out"} <= set(seen)


def test_a_new_field_is_a_new_flag():
    @dataclasses.dataclass
    class Extended(RunConfig):
        warmup: int = setting(3, "outer steps before the first validation", mark="resume")
        quiet: bool = setting(False, "say less")

    parser = build_parser(Extended, prog="x", formatter_class=HelpFormatter)
    args = parser.parse_args(["--warmup", "7", "--quiet", "--seed", "4"])
    assert (args.warmup, args.quiet, args.seed) == (7, True, 4)
    assert "outer steps before the first validation (default: 3)" in " ".join(parser.format_help().split())
    assert explicit_fields(parser, ["--warmup", "7"]) == {"warmup"}
    assert "warmup" in [f.name for f in dataclasses.fields(Extended) if f.metadata.get("mark") == "resume"]


def test_resume_fields_come_from_the_marks():
    assert {"problem", "dataset", "ways", "inner_lr", "seed", "channels", "rotate"} <= set(RESUME_FIELDS)
    assert not {"iterations", "time_budget", "out", "device", "progress", "test_tasks"} & set(RESUME_FIELDS)
    assert set(VALIDATION_FIELDS) == {"val_tasks", "test_queries", "test_inner_steps", "test_lam"}


def test_explicit_flags_tell_given_from_default():
    assert cli.explicit_flags(["--ways", "5", "--no-rotate", "--problem", "anil"]) == {"ways", "rotate", "problem"}


def test_resolve_returns_a_new_config():
    cfg = cli.parse_config(["--dataset", "sine", "--problem", "maml", "--device", "cpu", "--out", "runs/x"])
    before = dataclasses.replace(cfg)
    resolved = resolve_config(cfg)
    assert cfg == before and resolved is not cfg
    assert resolved.shots == 10 and cfg.shots is None


def test_a_shared_name_must_exist():
    with pytest.raises(KeyError):
        shared("data_dir")


def test_compare_dataset_is_checked(capsys):
    assert compare_grads.main(["--dataset", "cifar"]) == 2
    assert "unknown --dataset 'cifar': choose omniglot or sine" in capsys.readouterr().err
