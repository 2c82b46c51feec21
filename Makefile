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

# The main job: ResNet50 at 64 px, sized to finish in under 10 minutes on 2 CPU cores with the install.
demo: venv
	$(BIN)/mtl-keras train --data shapes --tasks shape,color,present,box,count --trunk resnet50 \
		--image-size 64 --epochs 4 --train-size 2400 --val-size 200 --test-size 500 --batch-size 32 \
		--out $(RUN) --force
	$(BIN)/mtl-keras evaluate $(RUN)/model.keras --split test --size 500
	$(BIN)/python -m export $(RUN)/model.keras --modes fp32,fp16,dynamic,int8 --eval-size 200 \
		--calibration-size 200 --timing-runs 20 --force
	$(BIN)/python -m demo $(RUN)/export/model_int8.tflite --samples 8 --out $(RUN)/gallery
	@echo "open $(RUN)/gallery/index.html to see every task's prediction"

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	bash bench/all.sh

clean:
	rm -rf runs .pytest_cache
