# `make demo`: the main job end to end on the built-in data; `make test`: the test suite.
# Both create .venv and install what they need on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN ?= runs/demo

.PHONY: venv demo test bench clean

$(BIN)/mtl-keras: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/mtl-keras

demo: venv
	$(BIN)/mtl-keras train --data shapes --tasks shape,color,present,box,count --out $(RUN) --force
	$(BIN)/mtl-keras evaluate $(RUN)/model.keras --data shapes --split test

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	bash bench/all.sh

clean:
	rm -rf runs .pytest_cache
