# Two entry points: `make repro` builds every result, `make test` runs the tests.
# Both create .venv and install the project into it when needed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: repro test test-slow bench setup clean

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/experts.py --json reports/bench/experts.json

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $(STAMP)

clean:
	rm -rf $(VENV)
