# Two commands on a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo train-smoke test test-cluster test-fast cluster-smoke install clean

# Bytecode is written on first import (the install compiles nothing, see below), also where the
# environment sets PYTHONDONTWRITEBYTECODE, as containers often do: else every process recompiles.
unexport PYTHONDONTWRITEBYTECODE

# Reinstall only when the package definition changes. No bytecode compilation at install time: pip's
# takes ~50 s on one core for the 6 GB CUDA build of torch and compileall ~25 s on two, for 250 MB of
# sources of which a process of ours imports about 80 MB; Python compiles those on first import instead.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The smoke study of the paper's Table 1 on the built-in synthetic data (local Ray, local MLflow
# store ./mlflow.db), then the table: the README's two study commands, as written there. Four
# trainings, two at a time with one thread each on 2 cores, evaluated at the end (the settings of
# docs/results_synthetic.md, whose seed 0 this is).
demo: $(STAMP)
	$(PY) experiments/ablation.py --preset smoke --tables 1
	$(PY) experiments/tables.py --study latest --out outputs/tables

# One training of the smoke preset (what tests/platform/test_accuracy.py pins).
train-smoke: $(STAMP)
	$(PY) experiments/train.py --preset smoke

# The Ray cluster launcher end to end on a loopback cluster (cluster.local.yaml). Needs root and
# no other Ray on this machine: ray up/down run `ray stop`. See scripts/cluster_smoke.sh.
cluster-smoke: $(STAMP)
	bash scripts/cluster_smoke.sh

# The suite without the study on a two-node Ray cluster of this machine (tests/platform/test_ablation.py):
# that one alone takes 3-4 minutes of both cores; CI runs it after the suite (.ci/run).
test: $(STAMP)
	$(PY) -m pytest -m "not cluster"

test-cluster: $(STAMP)
	$(PY) -m pytest -m cluster

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) outputs .pytest_cache
