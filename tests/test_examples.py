"""The examples/ scripts run as a user runs them (small settings), and the line counts the
docs quote (guide/python-api.md) are counted by benchmarks/line_counts.py."""
import subprocess
import sys
from pathlib import Path


from bilevel_anil.training.schema import read_run
from test_folder import write_folders

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
sys.path.insert(0, str(REPO / "benchmarks"))
from line_counts import code_lines  # noqa: E402


def run_example(script: str, *args: str, cwd: Path = REPO) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_example_own_regression():
    out = run_example("own_regression.py", "--steps", "20")
    assert "query MSE after 10 inner steps" in out


def test_example_own_images(tmp_path):
    root = write_folders(tmp_path / "data", classes=6, per_class=17)
    out = run_example("own_images.py", str(root), "--steps", "4", "--image-size", "16")
    assert "test accuracy after adaptation" in out


def test_example_implicit_vs_unrolled():
    out = run_example("implicit_vs_unrolled.py", "--inner-steps", "20")
    assert out.count("rel. error") == 2 and "unrolled" in out and "neumann" in out


def test_example_own_dataset_trains_saves_loads_and_predicts(tmp_path):
    out = run_example("own_dataset.py", "--steps", "20", "--out", str(tmp_path / "run"))
    assert "one new task:" in out and (tmp_path / "run" / "best.pt").is_file()
    record = read_run(tmp_path / "run" / "best.pt").learner
    assert record.head_module == "out" and record.algorithm == "anil"


def test_example_own_body_on_the_command_line(drawn_omniglot_root, tmp_path):
    out = run_example("own_body.py", "--data-root", str(drawn_omniglot_root), "--iterations", "2", "--val-every", "2",
                      "--meta-batch", "2", "--val-tasks", "4", "--test-tasks", "4", "--test-queries", "2",
                      "--no-progress", "--out", str(tmp_path / "run"))
    assert "network: small-resnet (generic per-task path)" in out and "accuracy after adaptation" in out


def test_code_lines_counts_code_only():
    source = ('"""doc"""\nimport x  # c\n\n# only a comment\ndef f():\n    """d"""\n    return (1,\n            2)\n'
              'import argparse\np = argparse.ArgumentParser()\np.add_argument("--a")\n')
    assert code_lines(source) == 4  # import x, def f, the two lines of return
    assert all(code_lines(p.read_text()) < 25 for p in EXAMPLES.glob("*.py"))
