"""The package's layers: every import inside ``bilevel_anil`` (module level, in functions, under
``TYPE_CHECKING``) points down the stack below, never up; ``data`` and ``models`` do not import
each other; only the Betty layer imports Betty, and the core imports neither Betty nor
learn2learn. The import graph is read from the source with ``ast``, so an import hidden in a
function counts like any other."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bilevel_anil"

# top to bottom: a module may import its own layer and the layers below it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("cli",)),
    ("recipes", ("recipes",)),
    ("api", ("api",)),
    ("training", ("training",)),
    ("betty", ("engines", "problems", "envs")),
    ("data and models", ("data", "models")),
    ("core", ("core",)),
    ("base", ("errors", "settings")),
]
# parts of one layer that must not import each other
INDEPENDENT = [("data", "models"), ("problems", "envs")]
BETTY_LAYER = ("engines", "problems", "envs")


def _part(module: str) -> str | None:
    """``bilevel_anil.core.learner`` -> ``core``; the package's own ``__init__`` (the public
    facade, which may name anything) -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _layer_of(part: str) -> int:
    for index, (_, parts) in enumerate(LAYERS):
        if part in parts:
            return index
    raise AssertionError(f"bilevel_anil.{part} is in no layer: add it to LAYERS in {__file__}")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file of the package."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            # "from . import x": x may be a module of that package
            found += [(node.lineno, n if _is_module(n) else target) for n in names]
    return found


def _is_module(name: str) -> bool:
    if not name.startswith("bilevel_anil."):
        return False
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        source_part = _part(source)
        if source_part is None:
            continue
        where = f"{path.relative_to(PACKAGE.parent)}"
        for line, target in imports(path):
            top = target.split(".")[0]
            if top == "betty" and source_part not in BETTY_LAYER:
                problems.append(f"{where}:{line} imports {target}: only {', '.join(BETTY_LAYER)} may import Betty")
            if top == "learn2learn" and source_part == "core":
                problems.append(f"{where}:{line} imports {target}: the core imports no learn2learn")
            if top != "bilevel_anil":
                continue
            target_part = _part(target)
            if target_part is None:
                problems.append(f"{where}:{line} imports the package's facade ({target}): import the module that "
                                "defines the name")
                continue
            if _layer_of(target_part) < _layer_of(source_part):
                problems.append(f"{where}:{line} imports {target}: layer '{LAYERS[_layer_of(source_part)][0]}' may "
                                f"not import the higher layer '{LAYERS[_layer_of(target_part)][0]}'")
            if tuple(sorted((source_part, target_part))) in {tuple(sorted(p)) for p in INDEPENDENT}:
                problems.append(f"{where}:{line} imports {target}: {source_part} and {target_part} are independent")
    return problems


def test_imports_point_down_the_layers():
    problems = layer_violations()
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_every_subpackage_is_in_a_layer():
    for path in PACKAGE.iterdir():
        if path.name.startswith(("_", ".")) or path.name == "py.typed":
            continue
        _layer_of(path.stem)


def test_the_check_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    """The contract is not vacuous: an upward import hidden in a function of the core is found."""
    core = tmp_path / "bilevel_anil" / "core"
    core.mkdir(parents=True)
    (tmp_path / "bilevel_anil" / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "bad.py").write_text("def f():\n    from ..api.meta_learner import MetaLearner\n    import betty\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "bilevel_anil", raising=False)
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "bilevel_anil")
    found = layer_violations()
    assert any("core/bad.py:2" in p and "higher layer 'api'" in p for p in found), found
    assert any("core/bad.py:3" in p and "Betty" in p for p in found), found


if __name__ == "__main__":  # python tests/test_layers.py: the violations, one a line
    print("\n".join(layer_violations()) or "no violations")
    raise SystemExit(pytest.main([__file__, "-q"]) if False else 0)
