# Two commands on a fresh machine with Python 3.11 and pip: `make test` and `make run`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test run demo lint bench clean env

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

env: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

run: $(STAMP)
	$(BIN)/parley run

# The five seed scenarios (and one command of every other type) against a running `make run`.
demo: $(STAMP)
	$(BIN)/parley demo

lint: $(STAMP)
	$(BIN)/ruff check .

# Every benchmark in bench/, then bench/REPORT.md and bench/plots/*.png; BENCH_QUICK=1: small sizes, minutes.
bench: $(STAMP)
	$(BIN)/python -m bench.report $(if $(BENCH_QUICK),--quick) --command "make bench$(if $(BENCH_QUICK), BENCH_QUICK=$(BENCH_QUICK))"

clean:
	rm -rf $(VENV) .parley .pytest_cache .ruff_cache *.egg-info

# The chaos suite: the whole product under Genesys faults, worker kills and a Redis restart, judged
# from the emulator's ledger and the event stream (README: Chaos suite). Arguments: CHAOS_ARGS.
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m chaos $(CHAOS_ARGS)
