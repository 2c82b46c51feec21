"""mtl_keras.perf: mixed-precision policy choice, ThroughputLogger."""

import csv

import keras
import numpy as np
import pytest

from mtl_keras import perf
from mtl_keras.errors import MtlError


@pytest.fixture
def restore_policy():
    before = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize(
    "capabilities, expected",
    [
        ([(8, 0)], "mixed_bfloat16"),
        ([(9, 0), (8, 6)], "mixed_bfloat16"),
        ([(7, 5)], "mixed_float16"),
        ([(6, 1)], "mixed_float16"),
        ([(9, 0), (7, 0)], "mixed_float16"),  # the oldest GPU decides: bfloat16 must run on all
        ([], "float32"),
    ],
)
def test_auto_policy_follows_compute_capability(capabilities, expected):
    assert perf.mixed_precision_policy("auto", compute_capabilities=capabilities) == expected


@pytest.mark.parametrize("mode, expected", [("float16", "mixed_float16"), ("BFloat16", "mixed_bfloat16"), ("off", "float32")])
def test_explicit_modes_are_honoured_whatever_the_device(mode, expected):
    for capabilities in ([], [(6, 0)], [(9, 0)]):
        assert perf.mixed_precision_policy(mode, compute_capabilities=capabilities) == expected


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(MtlError, match="mixed-precision mode 'fp8'.*auto, float16, bfloat16, off"):
        perf.mixed_precision_policy("fp8", compute_capabilities=[])


def test_auto_without_a_visible_gpu_stays_float32(restore_policy):
    # conftest hides GPUs, as on the CPU CI machine.
    assert perf.gpu_compute_capabilities() == []
    assert perf.set_mixed_precision("auto") == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_policy_reaches_the_model_and_outputs_stay_float32(restore_policy):
    import mtl_keras as mk

    assert perf.set_mixed_precision("float16") == "mixed_float16"
    tasks = mk.tasks.from_dataset("shapes", names=["shape", "box"])
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=32)
    assert model.get_layer("shape_hidden").compute_dtype == "float16"
    out = model(np.zeros((1, 32, 32, 3), "float32"))
    assert {k: v.dtype for k, v in out.items()} == {"shape": "float32", "box": "float32"}
    model.compile(optimizer="adam")
    # float16 needs loss scaling; Keras' compile adds it under this policy.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run_epoch(cb, clock, step_seconds, steps, first_extra=0.0, epoch=0, stride=1):
    cb.on_epoch_begin(epoch)
    for i in range(stride - 1, steps, stride):
        clock.now += step_seconds * stride + (first_extra if i == stride - 1 else 0.0)
        cb.on_train_batch_end(i)
    logs = {}
    cb.on_epoch_end(epoch, logs)
    return logs


def test_throughput_leaves_out_the_first_batch_and_caps_the_short_last_one():
    clock = FakeClock()
    cb = perf.ThroughputLogger(batch_size=10, examples_per_epoch=95, verbose=0)
    cb._clock = clock
    # 10 steps of 0.5 s; the first also traces for 30 s and must not count.
    logs = run_epoch(cb, clock, 0.5, steps=10, first_extra=30.0)
    # Batches 2..10 carry 95 - 10 = 85 images (the last batch holds 5) in 9 * 0.5 s.
    assert logs["images_per_second"] == pytest.approx(85 / 4.5)
    logs = run_epoch(cb, clock, 0.25, steps=10, epoch=1)
    assert logs["images_per_second"] == pytest.approx(85 / 2.25)
    assert cb.history == pytest.approx([85 / 4.5, 85 / 2.25])


def test_throughput_with_steps_per_execution_and_single_step_epochs():
    clock = FakeClock()
    cb = perf.ThroughputLogger(batch_size=8, verbose=0)
    cb._clock = clock
    # steps_per_execution=4: Keras reports batches 3, 7, 11 only.
    logs = run_epoch(cb, clock, 0.1, steps=12, stride=4)
    assert logs["images_per_second"] == pytest.approx(64 / 0.8)
    logs = run_epoch(cb, clock, 2.0, steps=1, epoch=1)
    assert logs["images_per_second"] == pytest.approx(8 / 2.0)


def test_throughput_reaches_history_and_csv_and_prints(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((40, 4), "float32"), np.ones((40, 1), "float32")
    printed = []
    cb = perf.ThroughputLogger(batch_size=8, examples_per_epoch=40, print_fn=printed.append)
    path = tmp_path / "history.csv"
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[cb, keras.callbacks.CSVLogger(str(path))])
    assert len(history.history["images_per_second"]) == 2
    assert all(r > 0 for r in history.history["images_per_second"])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["images_per_second"]) for r in rows] == pytest.approx(history.history["images_per_second"])
    assert len(printed) == 2 and printed[0].startswith("epoch 1: ") and "images/s" in printed[0]


def test_throughput_rejects_a_bad_batch_size():
    with pytest.raises(MtlError, match="batch size"):
        perf.ThroughputLogger(batch_size=0)


@pytest.mark.parametrize("balancer", ["static", "uncertainty", "pcgrad"])
def test_train_and_test_functions_are_traced_once(balancer):
    # A second trace (variables created inside the first one) costs ~10 s on ResNet50 per fit;
    # Python code in train_step runs once per trace, so counting its calls counts traces.
    import mtl_keras as mk

    tasks = mk.tasks.from_dataset("shapes", names=["shape", "present", "box", "count"])
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=32)
    model.compile(optimizer="adam", balancer=balancer)
    ds = mk.data.load("shapes", split="train", image_size=32, batch_size=8, tasks=tasks, size=16)
    traces = {"train": 0, "test": 0}

    def counting(kind, step):
        def wrapped(data):
            traces[kind] += 1
            return step(data)
        return wrapped

    model.train_step = counting("train", model.train_step)
    model.test_step = counting("test", model.test_step)
    history = model.fit(ds, validation_data=ds, epochs=2, verbose=0)
    assert traces == {"train": 1, "test": 1}
    assert np.isfinite(history.history["loss"]).all()
    model.evaluate(ds, verbose=0)
    assert traces["test"] == 1
