"""Lines of code a task takes: the examples of this package, and any other Python files given
(e.g. learn2learn's own examples, for comparison). A line of code is one that holds a token
other than a comment, a docstring or the argument parsing of the command line; blank lines,
comments and docstrings do not count.

    python benchmarks/line_counts.py [FILE ...]
"""
from __future__ import annotations

import io
import sys
import tokenize
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def code_lines(source: str) -> int:
    """Lines holding code: tokens other than comments, newlines and docstrings (a string
    statement that stands alone), and not the lines of ``argparse`` set-up."""
    lines: set[int] = set()
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        kind = token.type
        if kind in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                    tokenize.ENDMARKER):
            if kind in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                previous = kind
            continue
        standalone_string = kind == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                                   tokenize.DEDENT)
        previous = kind
        if standalone_string:
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    text = source.splitlines()
    parsing = {i for i in lines if "argparse" in text[i - 1] or "add_argument" in text[i - 1]
               or "parse_args" in text[i - 1]}
    return len(lines - parsing)


def main(paths: list[str]) -> int:
    files = sorted(EXAMPLES.glob("*.py")) + [Path(p) for p in paths]
    for path in files:
        print(f"{code_lines(path.read_text()):4d}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
