# Two commands do all set-up on a fresh machine with python3:  make demo  and  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow bench install clean

$(BIN)/losslab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/losslab

# The flagship run: grokking on a + b mod 97, its figures and its summary.
demo: install
	$(BIN)/losslab run grokking
	@echo "figures: runs/*/figures/grokking.png   all runs: $(BIN)/losslab runs"

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

bench: install
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python benchmarks/bench_trainer.py
	$(BIN)/python benchmarks/bench_optimizers.py
	$(BIN)/python benchmarks/bench_analysis.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_optuna_report.py

clean:
	rm -rf $(VENV) *.egg-info
