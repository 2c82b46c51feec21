"""The gradient engine under every gradient-level balancer: the shared set, the Gramian it hands the
rules, the update it builds from their coefficients, missing labels, and the loss scale.

The tiny model of test_balancing_training (a 5-conv trunk under the real heads) keeps each step
cheap; steps run eagerly where tracing would cost more than the step.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import mtl_keras as mk
from mtl_keras.balancing import BALANCERS, get_balancer
from mtl_keras.balancing.base import GramianBalancer
from mtl_keras.balancing.engine import GradientEngine
from mtl_keras.balancing.gradnorm import last_shared_kernel
from mtl_keras.balancing.shared import shared_features, shared_layers
from test_balancing_training import batch, tiny_model

GRAMIAN = sorted(k for k, cls in BALANCERS.items() if issubclass(cls, GramianBalancer))
LEVELS = ["features", "parameters"]


class _Fixed(GramianBalancer):
    """Returns the coefficients it is given and keeps the last Gramian it saw.

    Passed as an instance, never registered: the registry is what users (and the registry-wide tests
    in the same pytest worker) see."""

    key = "fixed_engine_test"

    def __init__(self, coefficients=(1.0, 1.0, 1.0), **kwargs):
        self.coefficients = list(coefficients)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        self.seen_gram = self._state("seen_gram", (num_tasks, num_tasks))

    def rule(self, gram, losses, present):
        self.seen_gram.assign(gram)
        return ops.convert_to_tensor(self.coefficients, "float32")

    def get_config(self):
        return {**super().get_config(), "coefficients": self.coefficients}



def one_step(balancer, seed=1, missing=None, policy=None, data_seed=0):
    """The model after one eager SGD step on one batch, and the step's weight changes."""
    m = tiny_model(seed=seed)
    m.compile(optimizer=keras.optimizers.SGD(0.1), balancer=balancer, run_eagerly=True)
    before = [v.numpy().copy() for v in m.trainable_variables]
    x, y, w = batch(8, seed=data_seed, missing=missing)
    m.fit(tf.data.Dataset.from_tensors((x, y, w)), epochs=1, verbose=0)
    return m, [v.numpy() - b for v, b in zip(m.trainable_variables, before)]


def per_task_gradients(model, sources_of, data_seed=0):
    """Each task's loss gradient for the tensors ``sources_of(features)`` gives, at the model's weights."""
    x, y, w = batch(8, seed=data_seed)
    engine = GradientEngine.of(model, "features")
    out = []
    for name in model.task_names:
        with tf.GradientTape() as tape:
            y_pred, feats = engine.forward(x)
            loss = model._mtl_losses[name](y[name], y_pred[name], w[name])
        out.append([g.numpy() for g in tape.gradient(loss, sources_of(feats))])
    return out


def gram_of(grads):
    flat = np.stack([np.concatenate([g.ravel() for g in gs]) for gs in grads]).astype(np.float64)
    return flat @ flat.T


# ----- the shared set --------------------------------------------------------------------------
def test_a_head_another_task_depends_on_is_not_shared():
    tasks = mk.data.tasks_for("shapes", names=["shape", "color"])
    tasks[1].depends_on = ("shape",)
    m = mk.build_model(tasks, "mobilenet_v3_small", 32)
    names = {layer.name for layer in shared_layers(m)}
    assert not any(n.startswith("shape_") for n in names), sorted(n for n in names if "shape" in n)
    assert last_shared_kernel(m).path == "conv_1/kernel"  # the trunk's last conv, not shape_logits
    assert [t._keras_history.operation.name for t in shared_features(m)] == ["shared_pool"]


def test_shared_features_are_the_taps_the_heads_read():
    m = tiny_model()
    # shape and count read the pooled c5, box reads c4: what all three share ends at c4, and
    # conv5 + the pool are the classification heads' (their sum of gradients, not balanced).
    assert [t._keras_history.operation.name for t in shared_features(m)] == ["trunk_conv4"]
    trunk = {layer.name for layer in shared_layers(m)}
    assert {f"trunk_conv{i}" for i in range(1, 5)} <= trunk
    assert "trunk_conv5" not in trunk and not any(n.startswith("box_") for n in trunk)


# ----- the update ------------------------------------------------------------------------------
@pytest.mark.parametrize("level", LEVELS)
def test_unit_coefficients_give_the_plain_sum_update(level):
    _, static = one_step("static")
    _, ones = one_step(_Fixed(grad_level=level))
    for a, b in zip(static, ones):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("level", LEVELS)
def test_the_rule_gets_the_gramian_of_the_task_gradients(level):
    m0 = tiny_model(seed=1)
    m0.compile(optimizer=keras.optimizers.SGD(0.1), balancer="static")
    if level == "features":
        expected = gram_of(per_task_gradients(m0, lambda feats: feats))
    else:
        trunk = [v.value for layer in shared_layers(m0) for v in layer.trainable_variables]
        expected = gram_of(per_task_gradients(m0, lambda feats: trunk))
    m, _ = one_step(_Fixed(grad_level=level))
    np.testing.assert_allclose(m.balancer.seen_gram.numpy(), expected, rtol=1e-4)


def test_coefficients_scale_each_task_on_the_trunk_and_leave_the_heads_alone():
    """c = (2, 0, 1): the trunk moves by 2·g_shape + g_box; each head still by its own gradient."""
    m0 = tiny_model(seed=1)
    m0.compile(optimizer=keras.optimizers.SGD(0.1), balancer="static")
    trunk_vars = [v for layer in shared_layers(m0) for v in layer.trainable_variables]
    grads = per_task_gradients(m0, lambda feats: [v.value for v in trunk_vars])
    m, delta = one_step(_Fixed(coefficients=(2.0, 0.0, 1.0), grad_level="parameters"))
    by_path = {v.path: d for v, d in zip(m.trainable_variables, delta)}
    order = {n: k for k, n in enumerate(m.task_names)}
    for j, v in enumerate(trunk_vars):
        expected = -0.1 * (2.0 * grads[order["shape"]][j] + grads[order["box"]][j])
        np.testing.assert_allclose(by_path[v.path], expected, rtol=1e-3, atol=1e-7)
    _, static = one_step("static")
    static_by_path = dict(zip([v.path for v in m.trainable_variables], static))
    count_head = [p for p in by_path if p.startswith("count_")]
    assert count_head and all(np.allclose(by_path[p], static_by_path[p], atol=1e-7) for p in count_head)


# ----- every gradient-level balancer -----------------------------------------------------------
@pytest.mark.parametrize("name", GRAMIAN)
def test_a_task_without_labels_gets_weight_zero_and_no_gradient(name):
    m, delta = one_step(get_balancer(name), missing="count")
    weights = m.balancer.current_weights()
    assert weights["count"] == 0.0 and all(np.isfinite(list(weights.values()))), weights
    moved = {v.path: float(np.abs(d).max()) for v, d in zip(m.trainable_variables, delta)}
    assert all(moved[p] == 0.0 for p in moved if p.startswith("count_")), moved
    assert any(moved[p] > 0 for p in moved if p.startswith("trunk_")), name


@pytest.mark.parametrize("name", sorted(BALANCERS))
def test_mixed_float16_update_matches_the_float32_step(name):
    """The loss scale is removed where it must be: a forgotten factor would be ~2^15 off, not 10 %."""
    _, reference = one_step(get_balancer(name))
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m, mixed = one_step(get_balancer(name))
        assert isinstance(m.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ref = np.concatenate([d.ravel() for d in reference])
    got = np.concatenate([d.ravel() for d in mixed])
    assert np.linalg.norm(got - ref) <= 0.1 * np.linalg.norm(ref), (name, np.linalg.norm(got), np.linalg.norm(ref))


# ----- each task loss once per step ------------------------------------------------------------
@pytest.mark.parametrize("name", ["uncertainty", "dwa", "mgda"])
def test_each_task_loss_is_computed_once_per_step_and_reported_as_keras_does(name):
    m = tiny_model(seed=1)
    m.compile(optimizer=keras.optimizers.SGD(0.1), balancer=name, run_eagerly=True)
    calls = {n: 0 for n in m.task_names}
    for n, fn in list(m._mtl_losses.items()):
        def counted(y_true, y_pred, sample_weight=None, fn=fn, n=n):
            calls[n] += 1
            return fn(y_true, y_pred, sample_weight)
        m._mtl_losses[n] = counted
    x, y, w = batch(8)
    logs = m.train_on_batch(x, y, sample_weight=w, return_dict=True)
    assert calls == {n: 1 for n in m.task_names}, calls
    # The logs are Keras' own: each output's unweighted loss, and their compile-weighted sum.
    reference = tiny_model(seed=1)
    reference.compile(optimizer=keras.optimizers.SGD(0.1))
    pred = reference(x, training=False)
    for n in m.task_names:
        expected = float(reference._mtl_losses[n](y[n], pred[n], w[n]))
        assert logs[f"{n}_loss"] == pytest.approx(expected, rel=1e-4), n
    assert logs["loss"] == pytest.approx(sum(logs[f"{n}_loss"] for n in m.task_names), rel=1e-4)


# ----- save and load ---------------------------------------------------------------------------
def test_every_balancer_saves_and_loads_with_its_state_and_options(tmp_path):
    """Two eager steps, save, load with safe_mode=True: the same class, options and state; a gradient
    method keeps a non-default level."""
    for name in sorted(BALANCERS):
        if name == "static":
            continue
        balancer = get_balancer(f"{name}@parameters" if name in GRAMIAN else name)
        m = tiny_model(seed=1)
        m.compile(optimizer=keras.optimizers.SGD(0.1), balancer=balancer, run_eagerly=True)
        x, y, w = batch(8)
        for _ in range(2):
            m.train_on_batch(x, y, sample_weight=w)
        path = str(tmp_path / f"{name}.keras")
        m.save(path)
        loaded = mk.load_model(path, safe_mode=True)
        assert type(loaded.balancer) is type(m.balancer), name
        assert loaded.balancer.get_config() == m.balancer.get_config(), name
        state = {v.path: v.numpy() for v in m.balancer.weights}
        assert state, name
        for v in loaded.balancer.weights:
            np.testing.assert_array_equal(v.numpy(), state[v.path], err_msg=f"{name}: {v.path}")
