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

# The main job: one ResNet50 trunk (from scratch) with classification (shape, color), detection (objects) and
# segmentation (mask) heads, at 64 px, sized to finish in 10 minutes on 2 CPU cores with the install
# (README, "The main job, measured"). The other heads read the detector: shape and color its largest object
# (and only that: --dependencies-only), mask its class map. One epoch of 7,200 scenes: a second epoch costs a
# validation pass, a checkpoint and a shuffle-buffer fill. train writes the test-split metrics (metrics.json);
# export validates fp32 and int8 per task against Keras on the same 500 test images; the demo runs the int8
# file with LiteRT only.
DEMO_TRAIN ?= --epochs 1 --train-size 7200 --batch-size 16
demo: venv
	$(BIN)/mtl-keras train --data shapes --tasks shape,color,objects,mask \
		--depends-on shape=objects,color=objects,mask=objects --dependencies-only shape,color \
		--trunk resnet50 --image-size 64 $(DEMO_TRAIN) --val-size 160 --test-size 500 --out $(RUN) --force
	$(BIN)/python -m export $(RUN)/model.keras --modes fp32,int8 --eval-size 500 --calibration-size 200 \
		--timing-runs 10 --force
	$(BIN)/python -m demo $(RUN)/export/model_int8.tflite --samples 8 --out $(RUN)/gallery
	@echo "open $(RUN)/gallery/index.html to see every task's prediction"

# Two pytest workers, each test file in one (so a module's fixtures are built once; the exported run the
# export and demo tests share is built once under a file lock, tests/export_fixture.py). TEST_WORKERS=0
# runs the suite in one process. (Not --dist loadgroup: pytest-xdist 3.8 cannot set groups on pytest 9.)
# --doctest-modules also runs every docstring example of the library, export and demo (a module's
# examples in one worker, like a test file; __main__.py files are not collected, see conftest.py).
TEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --doctest-modules tests mtl_keras export demo

bench: venv
	bash bench/all.sh

clean:
	rm -rf runs .pytest_cache
