# The two set-up commands of the README: `make run` (main job) and `make test` (test suite).
# Each creates .venv on first use; torch==2.13.0 is installed first so pip never pulls a CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= tiny
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

ORACLES := .oracles
LAKE := .ducklake
REAL_CORPORA ?= $(HOME)/.local/share/featstore/real-corpora
.PHONY: run test install real

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/featstore run --preset $(PRESET)

# The real-data experiment (docs/real-data.md): corpora from this Debian/Ubuntu machine's packages, then the run.
real: install
	test -d $(REAL_CORPORA) || $(VENV)/bin/featstore corpus debian --out $(REAL_CORPORA)
	$(VENV)/bin/featstore --warehouse warehouse-real run experiments/real-lua.toml

# Test oracles (tests/oracles.txt): other tools' own readers, installed apart from the venv, without their deps.
$(ORACLES)/.installed: tests/oracles.txt | install
	rm -rf $(ORACLES)
	$(PY) -m pip install -q --no-deps --no-compile --target $(ORACLES) -r tests/oracles.txt
	touch $@

# The DuckLake catalog backend (tests/ducklake.txt): duckdb 1.5 and its extensions, first on the path of a
# second pytest run over tests/lake/, which starts its own PostgreSQL server (Debian's postgresql package).
$(LAKE)/.installed: tests/ducklake.txt | install
	rm -rf $(LAKE)
	$(PY) -m pip install -q --no-deps --no-compile --target $(LAKE) -r tests/ducklake.txt
	touch $@

test: install $(ORACLES)/.installed $(LAKE)/.installed
	$(PY) -m pytest
	FEATSTORE_TEST_LAKE=1 PYTHONPATH=$(LAKE) $(PY) -m pytest tests/lake
