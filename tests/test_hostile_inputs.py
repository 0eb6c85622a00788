"""Hostile inputs, table-driven: each case is a command line (and environment) that must end in
one line on stderr, no traceback, and exit code 2, before any data is loaded where it can be.
Cases that once ended in a traceback or did silent nonsense (docs/guide/errors.md)."""
import subprocess
import sys
from pathlib import Path

import pytest

from bilevel_anil.cli import main

REPO = Path(__file__).resolve().parents[1]
FILE = str(Path(__file__))  # an existing file, for --out cases
SINE = ["--dataset", "sine", "--iterations", "2", "--val-tasks", "2", "--test-tasks", "2", "--no-progress"]

CASES = [
    # seeds numpy cannot take
    (["--seed", "-1", *SINE], "--seed must be between 0 and 4294967295"),
    (["--seed", str(2 ** 32), *SINE], "--seed must be between 0 and 4294967295"),
    (["--seed", str(2 ** 64), *SINE], "--seed must be between 0 and 4294967295"),
    (["pretrain-body", "--seed", "-1"], "--seed must be between"),
    (["pretrain-body", "--seed", str(2 ** 64)], "--seed must be between"),
    (["scenarios", "--seed", str(2 ** 32)], "--seed must be between"),
    (["compare-grads", "--seed", "-5"], "--seed must be between"),
    # settings whose task tensors cannot be allocated: said before allocating
    (["--meta-batch", "100000000"], "lower --meta-batch"),
    (["--test-tasks", "1000000000000"], "lower --test-tasks"),
    (["--val-tasks", "100000000"], "lower --val-tasks"),
    (["--image-size", "100000"], "or --image-size"),
    (["--dataset", "sine", "--meta-batch", "10000000000"], "lower --meta-batch"),
    # sizes a body cannot run on
    (["--image-size", "9"], "--image-size must be at least 16 pixels for conv4"),
    (["--arch", "resnet12", "--image-size", "12"], "at least 16 pixels for resnet12"),
    (["pretrain-body", "--arch", "conv4", "--image-size", "9"], "at least 16 pixels for conv4"),
    # numbers that overflow float32 in the first update
    (["--meta-lr", "1e300", *SINE], "--meta-lr 1e+300 is larger than float32 can hold"),
    (["--inner-lr", "1e39", *SINE], "--inner-lr 1e+39 is larger than float32 can hold"),
    (["pretrain-body", "--lr", "1e300"], "--lr 1e+300 is larger than float32 can hold"),
    (["compare-grads", "--lam", "1e300"], "--lam 1e+300 is larger than float32 can hold"),
    # --out that cannot be a run folder (every sub-command), refused before data or model
    (["--out", FILE, *SINE], "is a file, not a folder"),
    (["--out", FILE + "/run", *SINE], "which is a file"),
    (["--out", "", *SINE], "--out is empty"),
    (["--out", " ", *SINE], "--out is empty"),
    (["compare-grads", "--out", FILE], "is a file, not a folder"),
    (["compare-grads", "--out", FILE + "/x"], "which is a file"),
    (["compare-grads", "--out", ""], "--out is empty"),
    (["pretrain-body", "--out", FILE + "/body.pt"], "which is a file"),
    (["pretrain-body", "--out", ""], "--out is empty"),
    (["pretrain-body", "--out", str(REPO)], "is a folder: give a file name"),
    (["scenarios", "--out", FILE], "is a file, not a folder"),
    (["scenarios", "--out", FILE + "/x"], "which is a file"),
    (["scenarios", "--out", ""], "--out is empty"),
    # devices
    (["compare-grads", "--device", "foo"], "unknown device 'foo'"),
    (["pretrain-body", "--device", "foo"], "unknown device 'foo'"),
    (["--device", "cuda:x", *SINE], "unknown device 'cuda:x'"),
    (["pretrain-body", "--device", "cuda"], "no CUDA device is available"),
    # flags the chosen algorithm would ignore: refused, not accepted and ignored
    (["--problem", "maml", "--lam", "7", *SINE], "--lam applies to imaml/ianil"),
    (["--problem", "anil", "--lam", "7", *SINE], "--lam applies to imaml/ianil"),
    (["--problem", "reptile", "--test-lam", "1", *SINE], "--test-lam applies to imaml/ianil"),
    (["--problem", "maml", "--hypergrad", "neumann", *SINE], "--hypergrad applies to the implicit meta-gradient"),
    (["--problem", "fomaml", "--hypergrad-iterations", "3", *SINE], "--hypergrad-iterations applies to the implicit"),
    (["--problem", "maml", "--neumann-alpha", "0.5", *SINE], "--neumann-alpha applies to the implicit"),
    (["--problem", "anil", "--darts-alpha", "0.1", *SINE], "--darts-alpha applies to the implicit"),
    (["--problem", "fomaml", "--cg-damping", "1", *SINE], "--cg-damping applies to the implicit"),
    (["--problem", "reptile", "--hypergrad", "cg", *SINE], "--hypergrad applies to the implicit"),
    (["--problem", "pretrain", "--inner-proximal", "pullback", *SINE], "--inner-proximal applies to imaml/ianil"),
    (["--problem", "reptile", "--first-order", *SINE], "--first-order does not apply to reptile"),
    (["--problem", "pretrain", "--first-order", *SINE], "--first-order does not apply to pretrain"),
    (["compare-grads", "--dataset", "sine", "--ways", "7"], "--ways applies to classification"),
    (["compare-grads", "--ways", "1"], "--ways must be at least 2"),
    (["pretrain-body", "--ways", "1"], "--ways must be at least 2"),
    (["compare-grads", "--dataset", "sine", "--inner-lr", "1e10", "--tasks", "2", "--ks", "1", "--unroll", "1",
      "--darts-radii", "0.01"], "the inner loop diverged"),
]


# every count and every rate of run.py, at values no run can use (checked before any data)
COUNT_FLAGS = ["ways", "shots", "queries", "test-queries", "train-shots", "inner-batch", "inner-steps",
               "meta-batch", "task-chunk", "iterations", "val-every", "val-tasks", "test-tasks",
               "hypergrad-iterations"]
RATE_FLAGS = ["inner-lr", "meta-lr", "meta-eps", "lam", "neumann-alpha", "darts-alpha"]
CASES += [([f"--{flag}", value, "--problem", "maml" if flag == "inner-batch" else "imaml"],
           f"--{flag} must be a positive integer") for flag in COUNT_FLAGS for value in ("0", "-3")]
# 0 test-time steps evaluates the starting point (protonet's nearest centroid); below 0 is refused
CASES += [(["--test-inner-steps", value, "--problem", "imaml"], "--test-inner-steps must be an integer >= 0")
          for value in ("-1", "-3")]
CASES += [([f"--{flag}", value, "--problem", "imaml"], f"--{flag} must be a positive number")
          for flag in RATE_FLAGS for value in ("0", "-1", "nan", "inf")]
CASES += [(["--time-budget", value], "--time-budget must be a positive number of seconds")
          for value in ("0", "-1", "nan", "inf")]
CASES += [([f"--{flag}", "abc"], f"argument --{flag}: invalid")
          for flag in ("ways", "seed", "meta-lr", "iterations", "image-size", "lam")]
CASES += [(["pretrain-body", f"--{flag}", value], f"--{flag} must be a positive")
          for flag in ("epochs", "batch-size", "shots", "val-tasks", "lr") for value in ("0", "-2")]
CASES += [(["compare-grads", f"--{flag}", value], f"--{flag} must be a positive")
          for flag in ("shots", "queries", "tasks", "inner-steps", "lam", "inner-lr") for value in ("0", "-2")]


def _check(code, err, fragment):
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("argv, fragment", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)  # nothing a case writes by mistake lands in the repository
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    _check(code, capsys.readouterr().err, fragment)
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())  # refused before anything was written


def test_pretrain_body_batch_larger_than_the_data(capsys, omniglot_root, tmp_path):
    code = main(["pretrain-body", "--arch", "conv4", "--data-root", str(omniglot_root), "--batch-size", "10000000",
                 "--val-tasks", "2", "--out", str(tmp_path / "body.pt")])
    _check(code, capsys.readouterr().err, "is larger than the")


ENV_CASES = [
    ({"BILEVEL_ANIL_MALLOC": "tcmalloc"}, "BILEVEL_ANIL_MALLOC='tcmalloc' is not understood"),
    ({"BILEVEL_ANIL_DIST_TIMEOUT": "inf"}, "BILEVEL_ANIL_DIST_TIMEOUT must be a number of seconds above 0"),
    ({"BILEVEL_ANIL_DIST_TIMEOUT": "nan"}, "BILEVEL_ANIL_DIST_TIMEOUT must be a number of seconds above 0"),
    ({"BILEVEL_ANIL_DIST_TIMEOUT": "0"}, "BILEVEL_ANIL_DIST_TIMEOUT must be a number of seconds above 0"),
    ({"BILEVEL_ANIL_DIST_TIMEOUT": "-5"}, "BILEVEL_ANIL_DIST_TIMEOUT must be a number of seconds above 0"),
    ({"BILEVEL_ANIL_DIST_TIMEOUT": "soon"}, "BILEVEL_ANIL_DIST_TIMEOUT must be a number of seconds above 0"),
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not an integer of at least 1"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0' is not an integer of at least 1"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is 2 but RANK is not set"),
    ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK 5 is not below WORLD_SIZE 2"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR and MASTER_PORT not set"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "LOCAL_RANK='-1' is not an integer of at least 0"),
]


@pytest.mark.parametrize("env, fragment", ENV_CASES, ids=[" ".join(f"{k}={v}" for k, v in e.items()) for e, _ in ENV_CASES])
def test_bad_environment_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch, env, fragment):
    from bilevel_anil.training import allocator

    monkeypatch.setattr(allocator, "_applied", None)  # the switch is read again
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main([*SINE, "--out", str(tmp_path / "run")])
    _check(code, capsys.readouterr().err, fragment)


def test_ctrl_c_while_importing_is_one_line_and_130(tmp_path):
    """SIGINT during the seconds that importing torch takes: one line, exit 130, no traceback.
    A library's bare ``except:`` can swallow the interrupt at some moments of its import (the
    run then simply goes on, exit 0); so a few moments are tried: never a traceback, and at
    least one interrupt gives the line (the tries stop there). With a warm file cache the
    import can be over within a second, and an interrupt during training stops the run
    gracefully (exit 0), so the first moments come early."""
    import signal
    import time

    outcomes = []
    for i, delay in enumerate((0.15, 0.3, 0.45, 0.6, 1.0, 1.6, 2.4)):
        if 130 in outcomes:
            break
        # SIGINT as a terminal delivers it: not ignored, whatever this test process inherited
        proc = subprocess.Popen([sys.executable, "run.py", *SINE, "--out", str(tmp_path / f"run{i}")], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        assert proc.returncode in (0, 130), (proc.returncode, err)
        if proc.returncode == 130:
            assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
        outcomes.append(proc.returncode)
    assert 130 in outcomes, outcomes


def test_a_bad_flag_under_torchrun_is_printed_once(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc-per-node", "2", "run.py", "--bogus"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "run.py: error" in line]
    assert lines == ["run.py: error: unrecognized arguments: --bogus (see --help)"], proc.stderr


@pytest.mark.parametrize("command, out", [([], "run"), (["compare-grads"], "run"), (["scenarios"], "run"),
                                          (["pretrain-body"], "body.pt")])
def test_out_on_a_read_only_file_system(tmp_path, capsys, command, out):
    """A read-only tmpfs (root only; root ignores permission bits, not a read-only mount)."""
    from helpers import tmpfs

    with tmpfs(tmp_path / "ro", "ro,size=64k") as mount:
        code = main([*command, "--out", str(mount / out)])
        _check(code, capsys.readouterr().err, "is not writable (read-only or no permission)")
