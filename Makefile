# The two entry points of the README: `make run` and `make test`; `make docs` builds the site
# (site/, with --strict) and `make docs-serve` previews it at http://127.0.0.1:8000.
# PYTHON: the interpreter for the venv (python3.12, 3.12, /usr/bin/python3); default: the newest
# supported one found (python3.13 ... python3.10, on the PATH or through pyenv).
VENV ?= .venv
PYTHON ?=
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lint venv bench docs docs-serve clean

# make_venv.sh returns at once when the venv is up to date (same Python, same setup.cfg)
venv:
	@bash scripts/make_venv.sh $(VENV) $(PYTHON)

run: venv
	$(PY) run.py --problem anil $(ARGS)

test: venv
	$(PY) -m pytest $(ARGS)

# lint: ruff with the rules of pyproject.toml (pyflakes and pycodestyle's errors)
lint: venv
	$(VENV)/bin/ruff check .

docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict $(ARGS)

docs-serve: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve $(ARGS)

bench: venv
	$(PY) benchmarks/run_benchmarks.py $(ARGS)

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache
