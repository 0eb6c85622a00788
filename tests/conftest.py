"""Fixtures. Tests that need the real Omniglot read its location from
``BILEVEL_ANIL_OMNIGLOT_ROOT`` (the folder holding ``omniglot-py/``); they are skipped
without it, and fail instead when ``BILEVEL_ANIL_REQUIRE_DATA=1`` (as ``.ci/run`` sets)."""
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    value = os.environ.get("BILEVEL_ANIL_OMNIGLOT_ROOT")
    root = Path(value) if value else Path("data")
    if (root / "omniglot-py" / "images_background").is_dir() and (root / "omniglot-py" / "images_evaluation").is_dir():
        return root
    message = f"Omniglot not found under {root}/omniglot-py (set BILEVEL_ANIL_OMNIGLOT_ROOT)"
    if os.environ.get("BILEVEL_ANIL_REQUIRE_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def omniglot(omniglot_root):
    from bilevel_anil.data import load_omniglot

    return load_omniglot(omniglot_root, download=False)
