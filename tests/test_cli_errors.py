"""Bad input: one line on stderr, exit code 2, no traceback."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bilevel_anil.cli import main
from bilevel_anil.data import omniglot as og

REPO = Path(__file__).resolve().parents[1]


def run_main(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("args, fragment", [
    (["--problem", "matchingnet"], "unknown --problem 'matchingnet'"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--inner-lr", "0"], "--inner-lr must be a positive number"),
    (["--meta-lr=-1e-3"], "--meta-lr must be a positive number"),
    (["--inner-lr", "nan"], "--inner-lr must be a positive number"),
    (["--ways", "0"], "--ways must be a positive integer"),
    (["--shots", "-1"], "--shots must be a positive integer"),
    (["--meta-batch", "0"], "--meta-batch must be a positive integer"),
    (["--iterations", "0"], "--iterations must be a positive integer"),
    (["--inner-steps", "0"], "--inner-steps must be a positive integer"),
    (["--ways", "1"], "--ways must be at least 2"),
    (["--ways", "five"], "invalid int value"),
    (["--resume"], "--resume needs --out"),
    (["--bn", "group"], "unknown BatchNorm mode 'group'"),
    (["--problem", "maml", "--grad", "implicit"], "--grad 'implicit' needs the proximal inner objective"),
    (["--problem", "imaml", "--grad", "sideways"], "unknown --grad 'sideways'"),
    (["--problem", "imaml", "--grad", "implicit", "--first-order"], "--first-order applies to the unrolled meta-gradient"),
    (["--problem", "imaml", "--hypergrad", "lbfgs"], "unknown --hypergrad 'lbfgs'"),
    (["--problem", "imaml", "--lam", "0"], "--lam must be a positive number"),
    (["--problem", "imaml", "--hypergrad-iterations", "0"], "--hypergrad-iterations must be a positive integer"),
    (["--time-budget", "-5"], "--time-budget must be a positive number of seconds"),
    (["--problem", "pretrain", "--inner-steps", "5"], "pretrain does not adapt during meta-training"),
    (["--problem", "pretrain", "--head-only"], "--head-only does not apply to pretrain"),
    (["--head-init", "protos"], "unknown --head-init 'protos'"),
    (["--problem", "reptile", "--head-init", "zero"], "--head-init zero does not fit reptile"),
    (["--problem", "protonet", "--head-init", "zero"], "--head-init zero does not fit protonet"),
    (["--problem", "protonet", "--dataset", "sine"], "protonet needs classes to form prototypes, and sine-wave regression has none"),
    (["--dataset", "sine", "--head-init", "prototypes"], "--head-init prototypes needs classes"),
    (["--problem", "protonet", "--test-inner-steps", "-1"], "--test-inner-steps must be an integer >= 0"),
    (["--dataset", "sine", "--ways", "5"], "--ways applies to classification"),
    (["--dataset", "sine", "--bn", "running"], "--bn applies to the image networks; sine-wave regression's MLP has no BatchNorm"),
    (["--arch", "vgg11"], "unknown --arch 'vgg11'"),
    (["--dataset", "sine", "--arch", "resnet18"], "--arch applies to image benchmarks"),
    (["--arch", "resnet18", "--bn", "running"], "--bn running is not available on resnet18, which supports batch"),
    (["--pretrained", "imagenet"], "--pretrained imagenet needs a torchvision body"),
    (["--arch", "resnet18", "--pretrained", "no/such/file.pt"], "no/such/file.pt: no such file"),
    (["--train-body", "some"], "unknown --train-body 'some'"),
    (["--problem", "maml", "--train-body", "bn"], "freezes body parameters that maml's inner loop would adapt"),
    (["--image-size", "4"], "--image-size must be at least 16 pixels for conv4"),
    (["--image-size", "9"], "--image-size must be at least 16 pixels for conv4"),
    (["--arch", "resnet18", "--image-size", "7"], "--image-size must be at least 8 pixels for resnet18"),
])
def test_bad_arguments(capsys, args, fragment):
    assert_one_line_error(*run_main(capsys, *args), fragment)


def test_missing_data_root(capsys, tmp_path):
    assert_one_line_error(*run_main(capsys, "--data-root", str(tmp_path / "nowhere")), "does not exist")


def test_data_root_that_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(*run_main(capsys, "--data-root", str(f)), "is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder, so permissions cannot make one unreadable")
def test_unreadable_data_root(capsys, tmp_path):
    root = tmp_path / "locked"
    root.mkdir()
    root.chmod(0)
    try:
        assert_one_line_error(*run_main(capsys, "--data-root", str(root)), "not readable")
    finally:
        root.chmod(0o700)


def test_offline_without_a_copy_says_where_to_put_the_data(capsys, tmp_path, monkeypatch):
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "Omniglot", no_network)
    code, err = run_main(capsys, "--data-root", str(tmp_path))
    assert_one_line_error(code, err, "downloading it failed", str(tmp_path / "omniglot-py"), "images_background")


def test_no_download_without_a_copy(capsys, tmp_path):
    assert_one_line_error(*run_main(capsys, "--data-root", str(tmp_path), "--no-download"), "Omniglot is not under")


@pytest.fixture()
def small_copy(omniglot_root, tmp_path, monkeypatch):
    """A data root with 6 characters per split copied from the Omniglot under test."""
    monkeypatch.setenv("BILEVEL_ANIL_CACHE", str(tmp_path / "cache"))
    for split in og.SPLIT_DIRS.values():
        src = omniglot_root / og.FOLDER / split
        alphabet = sorted(src.iterdir())[0]
        for char in sorted(alphabet.iterdir())[:6]:
            shutil.copytree(char, tmp_path / "root" / og.FOLDER / split / alphabet.name / char.name)
    return tmp_path / "root"


def test_more_ways_than_classes(capsys, small_copy):
    code, err = run_main(capsys, "--data-root", str(small_copy), "--ways", "6")
    assert_one_line_error(code, err, "--ways 6 is larger than the", "classes of the meta-train split")


def test_more_examples_than_images_per_class(capsys, small_copy):
    code, err = run_main(capsys, "--data-root", str(small_copy), "--ways", "2", "--shots", "10", "--queries", "11")
    assert_one_line_error(code, err, "need 21 images per class", "has 20")


def test_corrupt_image_is_named(capsys, small_copy):
    victim = sorted((small_copy / og.FOLDER / "images_evaluation").rglob("*.png"))[3]
    victim.write_bytes(b"not a png")
    code, err = run_main(capsys, "--data-root", str(small_copy), "--ways", "2")
    assert_one_line_error(code, err, "cannot decode image", str(victim))


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_corrupt_or_mismatched_pretrained_file(capsys, omniglot_root, tmp_path, content):
    path = tmp_path / "weights.pt"
    if content is None:
        torch.save({"conv1.weight": torch.zeros(64, 1, 7, 7)}, path)  # a fragment: most tensors missing
    else:
        path.write_bytes(content)
    code, err = run_main(capsys, "--arch", "resnet18", "--pretrained", str(path), "--data-root", str(omniglot_root),
                         "--iterations", "1", "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, f"--pretrained {path}",
                          "is not a body of this architecture" if content is None else "cannot be read")


def test_subcommands_reject_bad_flags(capsys):
    assert_one_line_error(*run_main(capsys, "pretrain-body", "--arch", "vgg99"), "unknown --arch 'vgg99'")
    assert_one_line_error(*run_main(capsys, "pretrain-body", "--epochs", "0"), "--epochs must be a positive integer")
    assert_one_line_error(*run_main(capsys, "scenarios", "--only", "S9"), "unknown scenario 'S9'")
    assert_one_line_error(*run_main(capsys, "scenarios", "--time-budget", "0"), "--time-budget must be a positive")
    assert_one_line_error(*run_main(capsys, "scenarios", "--inner-lr", "-1"), "--inner-lr must be a positive number")
    assert_one_line_error(*run_main(capsys, "scenarios", "--pretrained", "nothing.pt"), "nothing.pt: no such file")


def test_script_exit_code_and_help():
    bad = subprocess.run([sys.executable, "run.py", "--problem", "nope"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown --problem" in bad.stderr
    ok = subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0
    for flag in ("--ways", "--shots", "--queries", "--inner-steps", "--inner-lr", "--meta-lr", "--meta-batch",
                 "--iterations", "--seed", "--device", "--out", "--first-order", "--val-every"):
        assert flag in ok.stdout


def _evaluation_pngs(root):
    return sorted((root / og.FOLDER / "images_evaluation").rglob("*.png"))


DATA_FAULTS = {
    # a PNG whose header claims 200k x 200k pixels: PIL's decompression-bomb guard
    "decompression bomb": (lambda root: _bomb(_evaluation_pngs(root)[2]), "DecompressionBombError"),
    "dangling symlink": (lambda root: os.symlink(root / "nowhere.png", _evaluation_pngs(root)[0].parent / "x.png"),
                         "cannot read image"),
    "symlink loop": (lambda root: _loop(_evaluation_pngs(root)[0].parent / "loop.png"), "cannot read image"),
}


def test_an_empty_class_folder_is_named(small_copy):
    from bilevel_anil.data import ClassificationTasks
    from bilevel_anil.errors import DataError

    folder = _evaluation_pngs(small_copy)[0].parent
    for png in folder.glob("*.png"):
        png.unlink()
    test = og.load_split(small_copy / og.FOLDER, "evaluation")
    with pytest.raises(DataError, match=f"class {folder.parent.name}/{folder.name} of the meta-test split has 0"):
        ClassificationTasks(test, 2, 1, 1, split_name="meta-test")


def _bomb(path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _loop(path):
    os.symlink(path.with_name("loop2.png"), path)
    os.symlink(path, path.with_name("loop2.png"))


@pytest.mark.parametrize("fault", DATA_FAULTS)
def test_data_faults_are_one_line(capsys, small_copy, fault):
    make, fragment = DATA_FAULTS[fault]
    make(small_copy)
    code, err = run_main(capsys, "--data-root", str(small_copy), "--ways", "2", "--iterations", "1")
    assert_one_line_error(code, err, fragment)


def test_non_utf8_file_names_are_read(capsys, small_copy, tmp_path):
    """A file name that is not UTF-8 (bytes a Linux file system allows) is hashed and read like any other."""
    png = _evaluation_pngs(small_copy)[0]
    os.rename(png, os.path.join(os.fsencode(png.parent), b"caf\xe9.png"))
    assert og.load_split(small_copy / og.FOLDER, "evaluation").images.shape[0] == 6 * 20


def test_truncated_or_misshaped_cache_is_decoded_again(small_copy, monkeypatch):
    import numpy as np

    base = small_copy / og.FOLDER
    first = og.load_split(base, "evaluation")
    cache = next(iter((small_copy.parent / "cache").glob("omniglot-images_evaluation-*.npz")))
    cache.write_bytes(cache.read_bytes()[:200])  # truncated: BadZipFile
    assert torch.equal(og.load_split(base, "evaluation").images, first.images)
    np.savez(cache.with_suffix(""), pixels=np.zeros((6 * 20, 9, 9), np.uint8))  # right count, wrong size
    assert torch.equal(og.load_split(base, "evaluation").images, first.images)


def test_read_only_cache_is_not_fatal(small_copy, monkeypatch):
    import errno

    import numpy as np

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(np, "savez", read_only)
    monkeypatch.setattr(og.Path, "unlink", read_only)
    assert og.load_split(small_copy / og.FOLDER, "evaluation").images.shape[0] == 6 * 20


def test_empty_cache_variable_is_refused(capsys, small_copy, monkeypatch):
    monkeypatch.setenv("BILEVEL_ANIL_CACHE", "")
    code, err = run_main(capsys, "--data-root", str(small_copy), "--ways", "2", "--iterations", "1")
    assert_one_line_error(code, err, "BILEVEL_ANIL_CACHE is empty")
