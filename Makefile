# Two entry points, each complete on its own (setup is idempotent):
#   make run    set up, then run the main job (python run_recbole_diffurec.py, no arguments)
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; installed before the package so pip never resolves a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup run test clean

setup: $(VENV)/.setup-stamp

$(VENV)/.setup-stamp: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

run: setup
	$(BIN)/python run_recbole_diffurec.py

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info log log_tensorboard saved
