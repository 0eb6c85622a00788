"""Every example in the package's docstrings runs and prints what it shows (doctest)."""
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bilevel_anil"
MODULES = sorted(".".join(("bilevel_anil", *p.relative_to(PACKAGE).with_suffix("").parts))
                 for p in PACKAGE.rglob("*.py") if ">>>" in p.read_text())


def test_the_examples_are_found():
    assert {"bilevel_anil.api.meta_learner", "bilevel_anil.settings", "bilevel_anil.models.registry"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    examples = sum(len(test.examples) for test in doctest.DocTestFinder().find(module))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # (Python 3.10 counts examples marked +SKIP as not attempted; 3.13 as attempted and skipped)
    assert examples > 0 and result.failed == 0
