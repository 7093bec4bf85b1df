# Two commands on a fresh clone with only Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lab demo --out data/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check lab tests benchmarks scripts

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
