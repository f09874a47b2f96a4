# The two README commands: `make run` (set up, then train `basic`) and `make test`; `make test-fast`
# is the quick subset.
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
DATASET ?= mnist
EPOCHS ?= 10
# Test worker processes (pytest-xdist). Each one loads TensorFlow; 2 fits CI's 2 cores. 0 runs in this process.
TEST_WORKERS ?= 2
# tests/conftest.py makes the schedule: the team-stack tests in one worker, the rest test by test.
# --durations: every run (CI too) ends with the slowest tests, so the suite budget can be watched.
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15
# mlflow run starts `python -m aetrack ...`: put the venv first on PATH so that python is ours.
export PATH := $(BIN):$(PATH)

.PHONY: setup run denoise test test-fast ui mlproject team-stack docs

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-server.txt requirements-export.txt requirements-docs.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-server.txt -r requirements-export.txt -r requirements-docs.txt -e .
	touch $@

# AETRACK_MAKE_TARGET: errors that suggest another dataset (MNIST cannot be downloaded) say it
# in make's terms, `make run DATASET=digits`; `mlflow run --env-manager local` passes it through.
run: setup
	AETRACK_MAKE_TARGET=$@ $(BIN)/mlflow run . -e basic --env-manager local --experiment-name aetrack \
		-P dataset=$(DATASET) -P epochs=$(EPOCHS)

denoise: setup
	AETRACK_MAKE_TARGET=$@ $(BIN)/mlflow run . -e denoise --env-manager local --experiment-name aetrack \
		-P dataset=$(DATASET) -P epochs=$(EPOCHS)

test: setup
	$(PYTEST)

# Everything but the tests marked slow (mlflow run, servers, signals, training in child processes).
test-fast: setup
	$(PYTEST) -m "not slow"

# The documentation site in docs/_build/html; the tutorial notebook is executed during the build,
# and any warning (a broken link, a failing cell) fails it.
docs: setup
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

ui: setup
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000

mlproject:
	$(PYTHON) -m aetrack.config > MLproject

# PostgreSQL + SeaweedFS (S3) + mlflow server on 127.0.0.1; prints the MLFLOW_TRACKING_URI; Ctrl-C stops it.
TEAM_STACK_DIR ?= team-stack
team-stack: setup
	$(BIN)/python deploy/stack.py --data-dir $(TEAM_STACK_DIR)
