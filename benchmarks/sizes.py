"""The package's sizes against the design targets (targets, not a lint gate): no class over 300
lines of code, no function over 60, no module over 400, at most 8 internal imports per module
(``bilevel_anil`` modules a module imports, in functions too). A line of code holds a token
other than a comment or a docstring (``line_counts.code_lines``, without its argparse rule).

    python benchmarks/sizes.py            # what is over a target, and the largest of each kind
    python benchmarks/sizes.py --all      # every unit
    python benchmarks/sizes.py --package OTHER/bilevel_anil   # another checkout's package
"""
from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bilevel_anil"
TARGETS = {"class": 300, "function": 60, "module": 400, "imports": 8}


def code_line_numbers(source: str) -> set[int]:
    """The numbers of the lines that hold code (not comments, blank lines or docstrings)."""
    lines: set[int] = set()
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            previous = token.type
            continue
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER):
            continue
        standalone = token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        previous = token.type
        if not standalone:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def internal_imports(tree: ast.AST, module: str) -> set[str]:
    package = module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            found.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bilevel_anil"):
            found.add(node.module)
    return found


def measure(package: Path = PACKAGE) -> list[tuple[str, str, int]]:
    """(kind, name, size) of every module, class and function of the package."""
    units = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        code = code_line_numbers(source)
        tree = ast.parse(source)
        name = path.relative_to(package.parent).as_posix()
        module = name[:-3].replace("/", ".").removesuffix(".__init__")
        units.append(("module", name, len(code)))
        units.append(("imports", name, len(internal_imports(tree, module if path.name != "__init__.py"
                                                            else module + ".x"))))
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                size = len([n for n in code if node.lineno <= n <= node.end_lineno])
                units.append((kind, f"{name}:{node.name}", size))
    return units


def main(argv: list[str]) -> int:
    package = Path(argv[argv.index("--package") + 1]) if "--package" in argv else PACKAGE
    units = measure(package.resolve())
    for kind, limit in TARGETS.items():
        mine = sorted((u for u in units if u[0] == kind), key=lambda u: -u[2])
        over = [u for u in mine if u[2] > limit]
        shown = mine if "--all" in argv else (over or mine[:1])
        print(f"{kind}: {len(over)} over {limit} (of {len(mine)}); largest: "
              + ", ".join(f"{n} {s}" for _, n, s in shown[:10]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
