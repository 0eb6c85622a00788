# The two entry points of the README: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test venv bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml scripts/make_venv.sh
	bash scripts/make_venv.sh $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: venv
	$(PY) run.py --problem anil $(ARGS)

test: venv
	$(PY) -m pytest $(ARGS)

bench: venv
	$(PY) benchmarks/run_benchmarks.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
