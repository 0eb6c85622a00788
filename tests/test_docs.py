"""The documentation cannot drift from the code.

- The site builds with ``mkdocs build --strict``: no broken link or anchor, no page left out of
  the navigation, no docstring the API reference cannot parse.
- Every tutorial runs: its code blocks are executed in order (``python`` blocks in one
  interpreter, ``bash`` blocks as commands, ``../shared/data`` standing for an Omniglot copy),
  and a block's own ``assert`` lines are its checks. A block right after the line
  ``<!-- test: skip -->`` is shown but not run (full-size commands).
- Every ``run.py`` command shown anywhere in the docs or the README parses with its
  sub-command's parser and passes its checks (the settings a run validates before it loads
  data), with placeholders such as ``DIR`` filled in.
- The README stays short and links into the site.
"""
import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TUTORIALS = sorted(p for p in (DOCS / "tutorials").glob("*.md") if p.name != "examples.md")
SKIP = "<!-- test: skip -->"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def code_blocks(text: str) -> list[tuple[str, str, bool]]:
    """``(language, code, skipped)`` of each fenced block, in order."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip().rsplit("\n", 1)[-1].strip()
        blocks.append((match.group(1), match.group(2), before == SKIP))
    return blocks


def doc_pages() -> list[Path]:
    """Every page of the site (not the run records under docs/runs/) and the README."""
    return [REPO / "README.md"] + sorted(p for p in DOCS.rglob("*.md") if "runs" not in p.relative_to(DOCS).parts
                                         and p.relative_to(DOCS).parts[0] != "scenarios")


def shell_lines(code: str) -> list[str]:
    """The commands of a bash block: comments dropped, continuation lines joined."""
    lines, current = [], ""
    for raw in code.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()  # a comment: '#' at the start or after a space
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    return lines


def test_code_blocks_are_found_and_skips_are_seen():
    text = "a\n\n```python\nx = 1\n```\n\n<!-- test: skip -->\n```bash\npython run.py\n```\n"
    assert code_blocks(text) == [("python", "x = 1\n", False), ("bash", "python run.py\n", True)]
    assert shell_lines("python run.py \\\n  --ways 5 # five\n# note\nls --a#b\n") == ["python run.py --ways 5", "ls --a#b"]
    assert len(TUTORIALS) >= 3


# --- the site -------------------------------------------------------------------------------

def test_site_builds_strict(tmp_path):
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("BILEVEL_ANIL_REQUIRE_DOCS") == "1":
            raise
        pytest.skip("the docs extra is not installed (make_venv.sh installs it; pip install -e '.[docs]')")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    site = tmp_path / "site"
    api = (site / "api" / "index.html").read_text()
    import bilevel_anil
    for name in bilevel_anil.__all__:  # every public name has its entry
        if name != "__version__":
            assert re.search(rf'id="bilevel_anil\.[\w.]*\b{name}"', api), name
    flags = (site / "guide" / "cli-reference" / "index.html").read_text()
    for flag in ("--problem", "--task-chunk", "--pretrain-share", "--exact-tol", "--only", "--pretrain-epochs"):
        assert f"<code>{flag}</code>" in flags, flag
    import dataclasses
    from bilevel_anil.recipes.pipeline import PIPELINE_PRESETS, PipelineConfig
    from bilevel_anil.recipes.presets import PRESETS
    from bilevel_anil.recipes.pretrain_body import BodyPretrainConfig
    for settings in (PipelineConfig, BodyPretrainConfig):  # each field with its flag's help (griffe extension)
        for field in dataclasses.fields(settings):
            anchor = f'id="{settings.__module__}.{settings.__name__}.{field.name}"'
            assert anchor in api, anchor
    assert "<code>--pretrain-share</code>: fraction of --time-budget" in api
    presets = (site / "guide" / "presets" / "index.html").read_text()  # generated from the code
    for name in [*PRESETS, *PIPELINE_PRESETS]:
        assert f"<code>{name}</code>" in presets, name


# --- the tutorials --------------------------------------------------------------------------

def command_argv(line: str, data_root: Path) -> list[str]:
    """A documented command as it runs here: this interpreter, this checkout's scripts, the
    test's Omniglot copy for ``../shared/data``."""
    argv = shlex.split(line.replace("../shared/data", str(data_root)))
    if argv[0] == "python":
        argv[0] = sys.executable
    return [str(REPO / a) if a == "run.py" or a.startswith(("examples/", "benchmarks/")) else a for a in argv]


def tutorial_script(page: Path, data_root: Path) -> str:
    """One Python script of a tutorial's blocks, in order: ``python`` blocks as they are,
    each command of a ``bash`` block as a subprocess that must succeed."""
    parts = ["import subprocess as _subprocess"]
    for language, code, skipped in code_blocks(page.read_text()):
        if skipped:
            continue
        if language == "python":
            parts.append(code)
        elif language == "bash":
            for line in shell_lines(code):
                parts.append(f"print('$ ' + {line!r}, flush=True)\n"
                             f"_subprocess.run({command_argv(line, data_root)!r}, check=True)")
    return "\n".join(parts)


def run_python(code: str, workdir: Path, name: str) -> str:
    """Run ``code`` in a fresh interpreter in ``workdir`` with this checkout's package; returns
    what it printed (``name`` says what failed)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page, tmp_path, drawn_omniglot_root):
    out = run_python(tutorial_script(page, drawn_omniglot_root), tmp_path, page.name)
    assert out.strip()


# --- every documented command ---------------------------------------------------------------

PLACEHOLDERS = {"DIR": "{data}", "../shared/data": "{data}", "P": "{data}/body.pt", "HOST:29500": "localhost:29500"}


def documented_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every ``run.py`` command in a shell block of the docs (but the
    tutorials' blocks that their tests run for real)."""
    found = []
    for page in doc_pages():
        for language, code, skipped in code_blocks(page.read_text()):
            if page in TUTORIALS and not skipped:
                continue
            if language in ("bash", "sh", "console", ""):
                for line in shell_lines(code):
                    if re.search(r"(^|\s)run\.py(\s|$)", line):
                        found.append((str(page.relative_to(REPO)), line))
    return found


COMMANDS = documented_commands()


def check_command(line: str, data: Path) -> None:
    """Parse a documented command with its sub-command's parser and run the checks a run makes
    before it loads data; raises on a flag or a setting the code no longer takes."""
    line = re.sub(r"\[[^\]]*\]", " ", line.removeprefix("$ "))  # optional parts: [--channels 1|3]
    argv = [a for a in shlex.split(line) if a != "..."]
    argv = [PLACEHOLDERS.get(a, a).format(data=data) for a in argv]
    argv = argv[argv.index("run.py") + 1:]  # python run.py ... or torchrun --opts run.py ...
    command = argv[0] if argv and not argv[0].startswith("-") else None
    rest = argv[1:] if command else argv
    from bilevel_anil import cli

    if command is None:
        cli.resolve_config(cli.parse_config(rest))
    else:
        assert command in cli.SUBCOMMANDS, f"unknown sub-command {command!r}"
        cli.subcommand(command).parse_config(rest)


def test_documented_commands_are_found():
    pages = {page for page, _ in COMMANDS}
    assert "README.md" in pages and "docs/guide/command-line.md" in pages and len(COMMANDS) > 30
    kinds = {next((a for a in line.split()[line.split().index("run.py") + 1:][:1] if not a.startswith("-")), "run")
             for _, line in COMMANDS}
    assert {"run", "pipeline", "pretrain-body", "scenarios", "compare-grads"} <= kinds


def test_check_command_fails_on_drift(tmp_path):
    with pytest.raises(SystemExit):  # a flag the parser does not know
        check_command("python run.py --problem anil --inner-rate 0.1", tmp_path)
    with pytest.raises(ValueError):  # a setting the checks refuse
        check_command("python run.py pipeline --data-root DIR --pretrain-share 1.5", tmp_path)


@pytest.mark.parametrize("page, line", COMMANDS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(COMMANDS)])
def test_documented_command_parses(page, line, drawn_omniglot_root, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a command's --out is checked, not written
    if "--help" in line.split():
        done = subprocess.run([sys.executable, str(REPO / "run.py"), "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "--problem" in done.stdout
        return
    check_command(line, drawn_omniglot_root)


# --- the README and the home page ---------------------------------------------------------

def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(((?:docs|examples)/[^)#]+)", text)
    assert "docs/index.md" in links and "docs/api.md" in links
    for link in links:
        assert (REPO / link).is_file(), link
    assert not re.search(r"\b[0-9a-f]{7}\b", text), "no commit hashes in the README (CI reports runs)"
    assert "passed" not in text, "no test-suite counts or timings in the README (CI reports them)"


@pytest.mark.parametrize("page", ["README.md", "docs/index.md", "docs/guide/python-api.md"])
def test_python_examples_of_the_front_pages_run(page, tmp_path):
    blocks = [code for language, code, skipped in code_blocks((REPO / page).read_text())
              if language == "python" and not skipped]
    assert blocks
    run_python("\n".join(blocks), tmp_path, page)


# --- the API reference's contract -------------------------------------------------------------

def public_callables():
    """``(name, object)`` of every public name and of the public methods of public classes."""
    import inspect

    import bilevel_anil
    found = []
    for name in sorted(n for n in bilevel_anil.__all__ if n != "__version__"):
        obj = getattr(bilevel_anil, name)
        found.append((name, obj))
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
                if not member.startswith("_") and inspect.isfunction(function) and function.__doc__:
                    found.append((f"{name}.{member}", function))
    return found


def test_every_public_name_documents_its_arguments_and_has_an_example():
    import inspect

    missing = []
    for name, obj in public_callables():
        doc = inspect.getdoc(obj) or ""
        if "." not in name and not re.search(r"^Examples?:\n(\s+.*\n)*?\s+>>> ", doc + "\n", re.M):
            missing.append(f"{name}: no Examples section with >>>")
        try:
            parameters = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        except (TypeError, ValueError):
            parameters = []
        if inspect.isclass(obj) and getattr(obj, "_is_protocol", False):
            parameters = []  # a Protocol: its methods carry the contract
        if dataclasses.is_dataclass(obj) and all("help" in f.metadata for f in dataclasses.fields(obj)):
            # a command's settings: each field is declared once, as its flag, and documented on the
            # generated "Every flag" page (tests/test_settings.py checks that every field is a flag)
            assert "Every flag" in doc, f"{name}: say where its fields are documented"
            parameters = []
        if parameters and not re.search(r"^(Args|Attributes):$", doc, re.M):
            missing.append(f"{name}: parameters {parameters} but no Args or Attributes section")
        for parameter in parameters if "Args:" in doc else ():
            if not re.search(rf"^\s+{parameter}( \(.*\))?:", doc, re.M):
                missing.append(f"{name}: argument {parameter!r} not documented")
    assert not missing, "\n".join(missing)
