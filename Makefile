# Two commands do all set-up on a fresh machine with python3:  make demo  and  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow bench docs install browser clean

$(BIN)/losslab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/losslab

# The flagship run: grokking on a + b mod 97, its figures and its summary.
demo: install
	$(BIN)/losslab run grokking
	@echo "figures: runs/*/figures/grokking.png   all runs: $(BIN)/losslab runs"

test: install browser
	$(BIN)/pytest -q

# Debian's Chromium, for the tests that load the HTML reports in a real browser (where it cannot be
# installed they are skipped, saying why; in CI, CI=true, the install must succeed)
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		{ echo "chromium not installed"; [ "$$CI" != true ]; }

# The documentation site, into site/ (open site/index.html): every warning an error (a broken link, an
# undocumented public name, an example or a tutorial block that fails)
# (first the gallery's quick instances, kept in build/gallery, and the tutorials' commands, kept in
# build/tutorials: about 10 and 30 minutes the first time, read back after)
docs: install
	$(BIN)/losslab gallery --quick --out build/gallery
	$(BIN)/python docs/tutorial_runs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "the site: site/index.html"

test-slow: install
	$(BIN)/pytest -q -m slow

# torchvision comes with curvlinops through BackPACK, which imports it only in its examples; the
# only torchvision the package index has is built for its own torch build, not the pinned CPU one,
# and its operators fail to load ("torchvision::nms does not exist"), which breaks importing
# transformers beside it: it is removed again.
bench: install
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/pip uninstall -q -y torchvision
	$(BIN)/python benchmarks/bench_trainer.py
	$(BIN)/python benchmarks/bench_optimizers.py
	$(BIN)/python benchmarks/bench_analysis.py
	$(BIN)/python benchmarks/bench_curvature.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_monitor.py
	$(BIN)/python benchmarks/bench_monitor.py --cockpit
	$(BIN)/python benchmarks/bench_optuna_report.py

clean:
	rm -rf $(VENV) *.egg-info
