"""mtl_keras.train.precision: mixed-precision policy choice, ThroughputLogger."""

import csv
import functools
import math

import keras
import numpy as np
import pytest

from mtl_keras.train import precision as perf
from mtl_keras.train.callbacks import ThroughputLogger
from mtl_keras.errors import MtlError


@pytest.fixture
def restore_policy():
    before = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(before)


@pytest.fixture
def avx2_cpu(monkeypatch):
    """This machine's CPU as an AVX2 one without bfloat16, whatever CPU runs the tests, and no probing."""
    monkeypatch.setattr(perf, "read_cpu_flags", lambda path="/proc/cpuinfo": frozenset({"avx2", "fma", "sse4_2"}))
    monkeypatch.setattr(perf, "measure_cpu_bfloat16_speedup", no_probe)


def no_probe(**kwargs):
    raise AssertionError("the bfloat16 probe ran")


@pytest.fixture
def fake_probe(monkeypatch):
    """Replace the probe by one returning ``fake_probe.ratio``; ``fake_probe.calls`` counts its runs."""

    class Probe:
        ratio = 1.3
        calls = 0

        def __call__(self, **kwargs):
            self.calls += 1
            return self.ratio

    probe = Probe()
    monkeypatch.setattr(perf, "measure_cpu_bfloat16_speedup", probe)
    monkeypatch.setattr(perf, "_probe_cache", {})
    return probe


@pytest.mark.usefixtures("avx2_cpu")
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


@pytest.mark.usefixtures("avx2_cpu")
def test_auto_without_a_visible_gpu_stays_float32(restore_policy):
    # conftest hides GPUs, as on the CPU CI machine.
    assert perf.gpu_compute_capabilities() == []
    assert perf.set_mixed_precision("auto") == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_mixed_policy_reaches_the_model_and_outputs_stay_float32(restore_policy):
    import mtl_keras as mk

    assert perf.set_mixed_precision("float16") == "mixed_float16"
    tasks = mk.data.tasks_for("shapes", names=["shape", "box"])
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=32)
    assert model.get_layer("shape_hidden").compute_dtype == "float16"
    out = model(np.zeros((1, 32, 32, 3), "float32"))
    assert {k: v.dtype for k, v in out.items()} == {"shape": "float32", "box": "float32"}
    model.compile(optimizer="adam")
    # float16 needs loss scaling; Keras' compile adds it under this policy.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_read_cpu_flags_parses_x86_and_arm_and_knows_when_it_cannot_tell(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma avx512_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 fma avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\nCPU implementer\t: 0x41\n")
    assert perf.read_cpu_flags(str(x86)) == {"fpu", "avx2", "fma", "avx512_bf16"}
    assert perf.read_cpu_flags(str(arm)) == {"fp", "asimd", "bf16"}
    assert perf.read_cpu_flags(str(tmp_path / "missing")) is None
    assert perf.cpu_has_native_bfloat16(perf.read_cpu_flags(str(x86))) is True
    assert perf.cpu_has_native_bfloat16(perf.read_cpu_flags(str(arm))) is True


@pytest.mark.parametrize(
    "flags, absent",
    [
        ({"avx2", "fma", "avx512f", "avx512_vnni"}, "avx512_bf16/amx_bf16"),
        ({"fp", "asimd", "sve"}, "bf16"),  # Arm
        (set(), "avx512_bf16/amx_bf16"),
    ],
)
def test_cpu_without_native_bfloat16_stays_float32_without_probing(monkeypatch, flags, absent):
    monkeypatch.setattr(perf, "measure_cpu_bfloat16_speedup", no_probe)
    choice = perf.choose_mixed_precision("auto", compute_capabilities=[], cpu_flags=flags)
    assert (choice.policy, choice.speedup) == ("float32", None)
    assert str(choice) == f"mixed precision auto: float32 (CPU has no native bfloat16: {absent} absent)"
    # Even an injected ratio does not override the flags: emulated bfloat16 is known to be slower.
    assert perf.mixed_precision_policy("auto", [], cpu_flags=flags, cpu_speedup=2.0) == "float32"
    assert perf.cpu_bfloat16_speedup(cpu_flags=flags) is None


@pytest.mark.parametrize(
    "ratio, expected", [(1.25, "mixed_bfloat16"), (1.1, "mixed_bfloat16"), (1.09, "float32"), (0.3, "float32")]
)
@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_injected_speedup_decides_on_a_bfloat16_cpu(monkeypatch, ratio, expected, flag):
    monkeypatch.setattr(perf, "measure_cpu_bfloat16_speedup", no_probe)
    choice = perf.choose_mixed_precision("auto", [], cpu_flags={"avx2", flag}, cpu_speedup=ratio)
    assert (choice.policy, choice.speedup) == (expected, ratio)
    if expected == "mixed_bfloat16":
        assert str(choice) == (
            f"mixed precision auto: mixed_bfloat16 (measured {ratio:.2f}x faster than float32 on this CPU)"
        )
    else:
        assert choice.reason == (
            f"mixed_bfloat16 measured {ratio:.2f}x float32's speed on this CPU, below the 1.1x needed"
        )


@pytest.mark.parametrize("ratio, expected", [(1.3, "mixed_bfloat16"), (0.95, "float32")])
def test_a_bfloat16_cpu_is_probed_once_per_process(fake_probe, ratio, expected):
    fake_probe.ratio = ratio
    for _ in range(3):
        choice = perf.choose_mixed_precision("auto", [], cpu_flags={"avx512_bf16"})
        assert (choice.policy, choice.speedup) == (expected, ratio)
    assert perf.cpu_bfloat16_speedup(cpu_flags={"amx_bf16"}) == ratio
    assert fake_probe.calls == 1


def test_unknown_cpu_flags_mean_measure(monkeypatch, fake_probe):
    monkeypatch.setattr(perf, "read_cpu_flags", lambda path="/proc/cpuinfo": None)
    choice = perf.choose_mixed_precision("auto", [])
    assert choice.policy == "mixed_bfloat16" and choice.reason.endswith("; CPU flags unknown")
    assert fake_probe.calls == 1


def test_a_failing_probe_leaves_float32(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("no bfloat16 kernel for Conv2D")

    monkeypatch.setattr(perf, "measure_cpu_bfloat16_speedup", broken)
    monkeypatch.setattr(perf, "_probe_cache", {})
    choice = perf.choose_mixed_precision("auto", [], cpu_flags={"amx_bf16"})
    assert choice.policy == "float32"
    assert choice.reason == "bfloat16 probe failed: RuntimeError: no bfloat16 kernel for Conv2D"


def test_gpus_and_explicit_modes_never_probe(monkeypatch):
    monkeypatch.setattr(perf, "measure_cpu_bfloat16_speedup", no_probe)
    assert str(perf.choose_mixed_precision("auto", [(9, 0), (8, 6)], cpu_flags={"amx_bf16"})) == (
        "mixed precision auto: mixed_bfloat16 (every GPU has compute capability >= 8.0 (lowest 8.6))"
    )
    assert perf.choose_mixed_precision("auto", [(7, 5)], cpu_flags={"amx_bf16"}).policy == "mixed_float16"
    explicit = perf.choose_mixed_precision("bfloat16", [], cpu_flags={"avx2"})
    assert str(explicit) == "mixed precision bfloat16: mixed_bfloat16 (as asked)"


@pytest.mark.usefixtures("avx2_cpu")
def test_set_mixed_precision_prints_its_reason(restore_policy):
    printed = []
    assert perf.set_mixed_precision("auto", print_fn=printed.append) == "float32"
    assert printed == ["mixed precision auto: float32 (CPU has no native bfloat16: avx512_bf16/amx_bf16 absent)"]


def test_the_forced_probe_really_measures_and_caches(monkeypatch, restore_policy):
    # The real probe at a tiny size (the default one takes ~4 s on a CPU that emulates bfloat16).
    tiny = functools.partial(perf.measure_cpu_bfloat16_speedup, batch_size=4, image_size=8, channels=8, layers=2,
                             warmup=1, rounds=3, budget_s=1.0)
    monkeypatch.setattr(perf, "measure_cpu_bfloat16_speedup", tiny)
    monkeypatch.setattr(perf, "_probe_cache", {})
    policy = keras.mixed_precision.global_policy().name
    before = keras.layers.Conv2D(1, 3).name
    ratio = perf.cpu_bfloat16_speedup(cpu_flags={"avx2"}, force=True)
    assert math.isfinite(ratio) and ratio > 0
    assert perf.cpu_bfloat16_speedup(cpu_flags={"avx2"}, force=True) == ratio  # cached, not measured again
    # The probe sets per-layer policies and names its layers: the global policy and Keras' automatic
    # layer names (which saved models refer to) come out as if it had not run.
    assert keras.mixed_precision.global_policy().name == policy
    assert keras.layers.Conv2D(1, 3).name == f"conv2d_{name_index(before) + 1}"


def name_index(name):
    return int(name.rpartition("_")[2]) if name.rpartition("_")[2].isdigit() else 0


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
    cb = ThroughputLogger(batch_size=10, examples_per_epoch=95, verbose=0)
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
    cb = ThroughputLogger(batch_size=8, verbose=0)
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
    cb = ThroughputLogger(batch_size=8, examples_per_epoch=40, print_fn=printed.append)
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
        ThroughputLogger(batch_size=0)


@pytest.mark.parametrize("balancer", ["static", "uncertainty", "pcgrad"])
def test_train_and_test_functions_are_traced_once(balancer):
    # A second trace (variables created inside the first one) costs ~10 s on ResNet50 per fit;
    # Python code in train_step runs once per trace, so counting its calls counts traces.
    import mtl_keras as mk

    tasks = mk.data.tasks_for("shapes", names=["shape", "present", "box", "count"])
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
