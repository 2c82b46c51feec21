"""Balanced training end to end: logs, missing labels, save/load, PCGrad's update, mixed precision
with XLA, and MirroredStrategy on two logical CPUs (in a subprocess: devices are fixed at TF start).

Run as a script (``python tests/test_balancing_training.py mirrored``) it is that subprocess.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.model import MultiTaskModel

BALANCERS = ["static", "uncertainty", "dwa", "gradnorm", "pcgrad"]
ADAPTIVE = BALANCERS[1:]
SIZE = 32


def make_tasks():
    shapes = mk.data.tasks_for("shapes", names=["shape", "count", "box"])
    for t in shapes:
        t.hidden_units = 16
    return shapes


def fit_state(balancer: str, strategy, dataset, run_eagerly=False) -> list:
    """The tiny model's weights (and the balancer's task weights) after one SGD epoch on ``dataset``."""
    with strategy.scope():
        m = tiny_model(seed=1)
        m.compile(optimizer=keras.optimizers.SGD(0.1), balancer=balancer, jit_compile=False, run_eagerly=run_eagerly)
    m.fit(dataset, epochs=1, verbose=0)
    state = [v.numpy() for v in m.trainable_variables]
    if m.balancer is not None:
        state += [np.asarray(list(m.balancer.current_weights().values()))]
    return state


def tiny_model(seed=0):
    """A small conv trunk under the real task heads: the trunk does not matter here, speed does."""
    keras.utils.set_random_seed(seed)
    tasks = make_tasks()
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(image)
    taps = {}
    for i in range(5):  # strides 2 .. 32; the taps c3/c4/c5 at 8/16/32 as the real trunks give
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name=f"trunk_conv{i + 1}")(x)
        taps[f"c{i + 1}"] = x
    features = {**taps, "pooled": keras.layers.GlobalAveragePooling2D(name="shared_pool")(x)}
    return MultiTaskModel(inputs=image, outputs={t.name: t.head(features) for t in tasks}, tasks=tasks)


def batch(n=8, seed=0, missing=None):
    """``(x, y, w)`` numpy arrays; ``missing`` names a task whose labels are all absent."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    lo = rng.uniform(0.0, 0.4, (n, 2))
    y = {
        "shape": rng.integers(0, 6, n).astype("int32"),
        "count": rng.integers(1, 4, (n, 1)).astype("float32"),
        "box": np.concatenate([lo, lo + rng.uniform(0.2, 0.5, (n, 2))], axis=1).astype("float32"),
    }
    w = {k: np.ones(n, "float32") for k in y}
    if missing:
        w[missing][:] = 0.0
    return x, y, w


def dataset(n=16, batch_size=8, seed=0):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(batch(n, seed)).batch(batch_size)


def head_weights(model, task):
    return [v.numpy().copy() for v in model.trainable_variables if v.path.startswith(f"{task}_")]


# ----- the logs -----------------------------------------------------------------------------------
def test_static_stays_plain_keras():
    m = tiny_model()
    m.compile(optimizer="adam", loss_weights={"box": 2.0}, balancer="static", jit_compile=False)
    assert m.balancer is None
    assert type(m).train_step is MultiTaskModel.train_step
    h = m.fit(dataset(), epochs=1, verbose=0)
    assert not any(k.startswith("weight_") for k in h.history)
    assert "balancer" not in m.get_compile_config()


@pytest.mark.parametrize("name", ADAPTIVE)
def test_every_balancer_trains_and_logs_its_weights(name, tmp_path):
    m = tiny_model()
    m.compile(optimizer="adam", balancer=name, jit_compile=False)
    csv = tmp_path / "history.csv"
    h = m.fit(dataset(), epochs=3, verbose=0, callbacks=[keras.callbacks.CSVLogger(str(csv))])
    for task in m.task_names:
        assert len(h.history[f"weight_{task}"]) == 3
        assert all(np.isfinite(h.history[f"{task}_loss"]))
    header = csv.read_text().splitlines()[0].split(",")
    assert {"weight_shape", "weight_count", "weight_box", "shape_loss"} <= set(header)
    weights = np.array([h.history[f"weight_{t}"] for t in m.task_names])
    if name in ("uncertainty", "gradnorm"):
        assert not np.allclose(weights[:, 0], weights[:, -1])  # they move every step
    if name == "dwa":
        np.testing.assert_allclose(weights[:, :2], 1.0)  # two epochs of history first
        assert not np.allclose(weights[:, 2], 1.0)
        assert weights[:, 2].sum() == pytest.approx(3.0, rel=1e-5)
    if name == "gradnorm":
        np.testing.assert_allclose(weights.sum(axis=0), 3.0, rtol=1e-5)


def test_reported_loss_is_the_static_weighted_sum_for_every_balancer():
    x, y, w = batch()
    for name in ["static", "uncertainty"]:
        m = tiny_model()
        m.compile(optimizer=keras.optimizers.SGD(0.0), loss_weights={"count": 3.0}, balancer=name, jit_compile=False)
        logs = m.train_on_batch(x, y, sample_weight=w, return_dict=True)
        assert logs["loss"] == pytest.approx(logs["shape_loss"] + 3 * logs["count_loss"] + logs["box_loss"], rel=1e-5)


# ----- missing labels -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", BALANCERS)
def test_a_task_without_labels_leaves_its_head_unchanged(name):
    # Plain SGD: a zero gradient moves nothing (Adam's moments would, from earlier steps).
    m = tiny_model()
    m.compile(optimizer=keras.optimizers.SGD(0.1), balancer=name, jit_compile=False)
    x, y, w = batch(missing="count")
    before_count, before_shape = head_weights(m, "count"), head_weights(m, "shape")
    log_vars = m.balancer.log_vars.numpy().copy() if name == "uncertainty" else None
    logs = m.train_on_batch(x, y, sample_weight=w, return_dict=True)
    for a, b in zip(before_count, head_weights(m, "count")):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before_shape, head_weights(m, "shape")))
    assert logs["count_mae"] == 0.0  # no labelled sample reached the metric
    if name == "uncertainty":
        s = m.balancer.log_vars.numpy()
        assert s[1] == log_vars[1] and s[0] != log_vars[0]  # only present tasks' s_i move
    if name == "gradnorm":
        assert m.balancer.initial_losses.numpy()[1] == 0.0


# ----- PCGrad's update is the projected sum ---------------------------------------------------------
def test_pcgrad_step_applies_the_projected_gradient():
    import tensorflow as tf

    from test_balancers import pcgrad_reference

    from mtl_keras.balancing import PCGrad
    from mtl_keras.balancing.shared import shared_layers

    m = tiny_model()
    m.compile(optimizer=keras.optimizers.SGD(1.0), balancer=PCGrad(grad_level="parameters"), jit_compile=False)
    x, y, w = batch()
    # What all three tasks read: conv1..conv4 (box reads c4); conv5 is only the classification heads'.
    shared = [v for layer in shared_layers(m) for v in layer.trainable_variables]
    assert sorted({v.path.split("/")[0] for v in shared}) == [f"trunk_conv{i}" for i in range(1, 5)]
    with tf.GradientTape(persistent=True) as tape:
        pred = m(x, training=True)
        losses = [m._mtl_losses[n](y[n], pred[n], w[n]) for n in m.task_names]
    zero = tf.UnconnectedGradients.ZERO
    per_task = [
        np.concatenate([g.numpy().ravel() for g in tape.gradient(l, [v.value for v in shared], unconnected_gradients=zero)])
        for l in losses
    ]
    dots = np.array(per_task) @ np.array(per_task).T
    assert (dots[~np.eye(3, dtype=bool)] < 0).any(), "the test needs a conflict to be meaningful"
    orders = np.asarray(m.balancer.task_orders(0))
    expected = pcgrad_reference(per_task, orders)
    before = np.concatenate([v.numpy().ravel() for v in shared])
    m.train_on_batch(x, y, sample_weight=w)
    after = np.concatenate([v.numpy().ravel() for v in shared])
    np.testing.assert_allclose(before - after, expected, rtol=2e-3, atol=1e-6)
    assert not np.allclose(expected, np.sum(per_task, axis=0))  # surgery changed something


def test_gradnorm_measures_the_last_shared_kernel():
    from mtl_keras.balancing import last_shared_kernel

    # shape and count read the pooled c5, box reads c4: c4's conv is the last one all of them share.
    assert last_shared_kernel(tiny_model()).path == "trunk_conv4/kernel"


# ----- save / load --------------------------------------------------------------------------------
def test_uncertainty_log_variances_save_and_load_with_the_model(tmp_path):
    m = tiny_model()
    m.compile(optimizer="adam", balancer=mk.balancing.Uncertainty(initial_log_var=0.3), jit_compile=False)
    m.fit(dataset(), epochs=2, verbose=0)
    s = m.balancer.log_vars.numpy()
    assert not np.allclose(s, 0.3)
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = mk.load_model(path, safe_mode=True)
    assert type(loaded.balancer).__name__ == "Uncertainty" and loaded.balancer.initial_log_var == 0.3
    np.testing.assert_array_equal(loaded.balancer.log_vars.numpy(), s)
    x = batch()[0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["box"], m.predict(x, verbose=0)["box"], atol=1e-6)
    # Training goes on from there, the optimizer state included.
    assert loaded.optimizer.iterations.numpy() == m.optimizer.iterations.numpy()
    loaded.fit(dataset(), epochs=1, verbose=0)
    assert not np.array_equal(loaded.balancer.log_vars.numpy(), s)
    # Without compiling, the file still loads (the log-variances are then simply not used).
    assert mk.load_model(path, compile=False).balancer is None


def test_dwa_history_survives_save_and_load(tmp_path):
    m = tiny_model()
    m.compile(optimizer="adam", balancer="dwa", jit_compile=False)
    m.fit(dataset(), epochs=3, verbose=0)
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = mk.load_model(path)
    assert loaded.balancer.current_weights() == m.balancer.current_weights()
    np.testing.assert_array_equal(loaded.balancer.history.numpy(), m.balancer.history.numpy())


def test_changing_balancer_needs_a_fresh_model():
    m = tiny_model()
    m.compile(optimizer="adam", balancer="uncertainty", jit_compile=False)
    s = m.balancer
    m.compile(optimizer="adam", balancer="uncertainty", jit_compile=False)
    assert m.balancer is s
    with pytest.raises(mk.MtlError, match="compiled with balancer 'uncertainty'"):
        m.compile(optimizer="adam", balancer="pcgrad", jit_compile=False)


# ----- mixed precision and XLA --------------------------------------------------------------------
@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


# XLA compiles cost ~10 s of CPU each here, so float16 (loss scaling, the harder case) goes through
# XLA and bfloat16 through the plain graph; static under XLA is Keras' own path and is left to Keras.
@pytest.mark.parametrize("policy, jit", [("mixed_float16", True), ("mixed_bfloat16", False)], indirect=["policy"])
def test_mixed_precision_and_xla_with_every_balancer(policy, jit):
    for name in BALANCERS if not jit else ADAPTIVE:
        m = tiny_model()
        m.compile(optimizer=keras.optimizers.SGD(0.05), balancer=name, jit_compile=jit)
        assert m.jit_compile == jit
        assert isinstance(m.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
        assert m.get_layer("trunk_conv1").compute_dtype == policy.split("_")[1]
        before = [v.numpy().copy() for v in m.trainable_variables]
        h = m.fit(dataset(), epochs=1, verbose=0)
        assert np.isfinite(h.history["loss"][0]), name
        moved = [not np.array_equal(a, v.numpy()) for a, v in zip(before, m.trainable_variables)]
        assert sum(moved) >= len(moved) - 1, name  # every layer trained (a skipped fp16 step would move none)
        if m.balancer is not None:
            assert all(np.isfinite(list(m.balancer.current_weights().values()))), name


# ----- MirroredStrategy over two logical CPUs ------------------------------------------------------
def test_mirrored_strategy_gives_the_single_device_update_for_every_balancer():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "mirrored"], cwd=root, env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in [*every_balancer(), "uneven-discriminates"]:
        assert f"ok {name}" in done.stdout, done.stdout


def every_balancer() -> list:
    """Every registered balancer; gradient-level ones at the features level, and PCGrad also at the
    parameters level (that level's all-reduce of the task gradients is the same code for all)."""
    from mtl_keras.balancing import BALANCERS as REGISTRY
    from mtl_keras.balancing.base import GramianBalancer

    out = []
    for name, cls in sorted(REGISTRY.items()):
        out += [f"{name}@features"] if issubclass(cls, GramianBalancer) else [name]
    return out + ["pcgrad@parameters"]


def _mirrored_main():
    """One SGD step on the same global batch, on one device and on two mirrored replicas."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2

    def run(name, scope, weights):
        x, y, _ = batch(8, seed=3)
        # One step: eager costs less than tracing it (about 3 s a model on 2 cores).
        return fit_state(name, scope, tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8),
                         run_eagerly=True)

    def same(a, b):
        return all(np.allclose(u, v, rtol=1e-4, atol=1e-6) for u, v in zip(a, b))

    ones = {k: np.ones(8, "float32") for k in ("shape", "count", "box")}
    # Replica 0 gets all labelled counts, replica 1 none: only a global-batch mean matches one device.
    uneven = {**ones, "count": np.r_[np.ones(4), np.zeros(4)].astype("float32"),
              "box": np.array([1, 0, 1, 1, 1, 0, 0, 1], "float32")}
    default = tf.distribute.get_strategy()
    for name in every_balancer():
        assert same(run(name, default, uneven), run(name, strategy, uneven)), name
        print(f"ok {name}", flush=True)
    # The uneven batch does tell the two apart: Keras' own step averages per-replica means there.
    MultiTaskModel.train_step = lambda self, data: keras.Model.train_step(self, data)
    assert not same(run("static", default, uneven), run("static", strategy, uneven))
    print("ok uneven-discriminates", flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["mirrored"]:
    sys.path.insert(0, os.getcwd())
    _mirrored_main()
