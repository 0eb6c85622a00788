"""Fixtures. Omniglot tests run on the real copy when ``BILEVEL_ANIL_OMNIGLOT_ROOT`` names the
folder holding ``omniglot-py/`` (CI sets it, with ``BILEVEL_ANIL_REQUIRE_DATA=1`` so that a
missing copy fails instead of falling back); without it they run on a small Omniglot the
tests draw themselves (``omniglot_fixture.py``), read through the same loading code."""
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(min(2, torch.get_num_threads()))

from bilevel_anil.training.allocator import keep_freed_memory  # noqa: E402  (after the path and threads)

keep_freed_memory()  # as the command line does (docs/results/speed.md): the suite runs as users' runs do

from omniglot_fixture import expected_counts, write_omniglot_fixture  # noqa: E402

REAL_COUNTS = {"train": 800, "val": 164, "test": 659}


@pytest.fixture(scope="session")
def drawn_omniglot_root(tmp_path_factory) -> Path:
    """The drawn Omniglot, written once per test session."""
    return write_omniglot_fixture(tmp_path_factory.mktemp("drawn-omniglot"))


@pytest.fixture(scope="session")
def omniglot_root(request) -> Path:
    value = os.environ.get("BILEVEL_ANIL_OMNIGLOT_ROOT")
    if not value:
        return request.getfixturevalue("drawn_omniglot_root")
    root = Path(value)
    if (root / "omniglot-py" / "images_background").is_dir() and (root / "omniglot-py" / "images_evaluation").is_dir():
        return root
    message = f"Omniglot not found under {root}/omniglot-py (unset BILEVEL_ANIL_OMNIGLOT_ROOT to use the drawn copy)"
    if os.environ.get("BILEVEL_ANIL_REQUIRE_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def omniglot_counts(omniglot_root, drawn_omniglot_root) -> dict[str, int]:
    """Characters per meta-split expected under ``omniglot_root``."""
    return expected_counts() if omniglot_root == drawn_omniglot_root else REAL_COUNTS


@pytest.fixture(scope="session")
def omniglot(omniglot_root):
    from bilevel_anil.data import load_omniglot

    return load_omniglot(omniglot_root, download=False)
