"""Short imaml runs with the defaults actually learn: on sine the adapted error falls well
below the unadapted one, on Omniglot accuracy rises clearly above chance."""
import json

from bilevel_anil.cli import main


def test_imaml_on_sine_learns(tmp_path):
    out = tmp_path / "imaml-sine"
    assert main(["--problem", "imaml", "--dataset", "sine", "--iterations", "400", "--val-every", "200",
                 "--val-tasks", "50", "--test-tasks", "100", "--out", str(out), "--no-progress"]) == 0
    k10 = json.loads((out / "results.json").read_text())["test"]["K=10"]
    assert k10["10"]["mean"] < 0.85 * k10["0"]["mean"]  # measured here: 1.88 vs 2.73 (0.69)


def test_imaml_on_omniglot_learns(omniglot_root, tmp_path):
    out = tmp_path / "imaml"
    assert main(["--problem", "imaml", "--data-root", str(omniglot_root), "--meta-batch", "8", "--iterations", "40",
                 "--val-every", "40", "--val-tasks", "20", "--test-tasks", "60", "--test-queries", "5",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "results.json").read_text())
    after = report["test"]["5-way 1-shot"]["16"]
    assert after["mean"] > 0.2 + 0.15  # chance is 0.2; measured here: 0.434
