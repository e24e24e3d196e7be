# make install | make test | make bench   (see README.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BENCH_OUT ?= results/bench

.PHONY: install test bench gpu-check clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python -m sru.bench --out $(BENCH_OUT)

gpu-check: install
	bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) bench_out .pytest_cache
