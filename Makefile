# The two set-up commands of the README: `make run` (main job) and `make test` (test suite).
# Each creates .venv on first use; torch==2.13.0 is installed first so pip never pulls a CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= tiny
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: run test install

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/featstore run --preset $(PRESET)

test: install
	$(PY) -m pytest
