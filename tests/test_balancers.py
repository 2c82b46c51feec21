"""Balancer rules against hand-computed values; registry, options and strategy selection."""

import json
import math

import keras
import numpy as np
import pytest

from mtl_keras.balancing import (
    BALANCERS,
    DWA,
    GradNorm,
    Uncertainty,
    dwa_weights,
    get_balancer,
    gradnorm_targets,
    pcgrad_coefficients,
)
from mtl_keras.train.distribute import get_strategy
from mtl_keras.errors import MtlError


def pcgrad_reference(grads, orders):
    """PCGrad written out on the vectors themselves (Yu et al. 2020, Algorithm 1)."""
    grads = np.asarray(grads, np.float64)
    out = []
    for i, g in enumerate(grads):
        g = g.copy()
        for j in orders[i]:
            if j == i:
                continue
            dot = g @ grads[j]
            if dot < 0:
                g = g - dot / (grads[j] @ grads[j]) * grads[j]
        out.append(g)
    return np.sum(out, axis=0)


# ----- PCGrad -------------------------------------------------------------------------------------
def test_pcgrad_projects_two_conflicting_gradients_by_hand():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])  # g1·g2 = -1 < 0
    # g1 off g2: g1 - (-1/2)·g2 = (0.5, 0.5); g2 off g1: g2 - (-1/1)·g1 = (0, 1).
    g = np.stack([g1, g2])
    c = np.asarray(pcgrad_coefficients(g @ g.T, [[0, 1], [1, 0]]))
    np.testing.assert_allclose(c @ g, [0.5, 1.5], atol=1e-6)
    # In the span of the originals: g1' = g1 + g2/2, g2' = g2 + g1, so the sum is 2·g1 + 1.5·g2.
    np.testing.assert_allclose(c, [2.0, 1.5], atol=1e-6)
    # Each projected gradient no longer conflicts with the other task's original gradient.
    assert (g1 + g2 / 2) @ g2 == pytest.approx(0.0) and (g2 + g1) @ g1 == pytest.approx(0.0)


def test_pcgrad_leaves_agreeing_gradients_alone():
    g = np.array([[1.0, 2.0], [0.5, 0.1]])
    c = np.asarray(pcgrad_coefficients(g @ g.T, [[1, 0], [0, 1]]))
    np.testing.assert_allclose(c, [1.0, 1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pcgrad_gram_form_matches_vector_form_with_three_tasks(seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(3, 7))
    g[1] = -g[0] + 0.3 * rng.normal(size=7)  # make sure some pairs conflict
    orders = [list(rng.permutation(3)) for _ in range(3)]
    c = np.asarray(pcgrad_coefficients((g @ g.T).astype("float32"), orders), np.float64)
    np.testing.assert_allclose(c @ g, pcgrad_reference(g, orders), rtol=1e-4, atol=1e-5)


def test_pcgrad_order_matters_with_three_tasks_and_is_seeded():
    b = get_balancer("pcgrad", tasks=["a", "b", "c"])
    first = np.asarray(b.task_orders(5))
    np.testing.assert_array_equal(first, np.asarray(b.task_orders(5)))
    assert sorted(first[0]) == [0, 1, 2]
    assert any(not np.array_equal(first, np.asarray(b.task_orders(s))) for s in range(6, 12))


# ----- uncertainty --------------------------------------------------------------------------------
def test_uncertainty_loss_for_given_log_variances():
    b = Uncertainty(tasks=["shape", "count", "box"], kinds=["classification", "regression", "box"])
    b.log_vars.assign([0.5, -1.0, 2.0])
    losses = np.array([1.2, 0.3, 4.0], "float32")
    expected = (
        math.exp(-0.5) * 1.2 + 0.5 * 0.5            # classification: 1/σ²·L + log σ
        + 0.5 * math.exp(1.0) * 0.3 + 0.5 * -1.0    # regression: 1/(2σ²)·L + log σ
        + 0.5 * math.exp(-2.0) * 4.0 + 0.5 * 2.0    # box (Gaussian): as regression
    )
    assert float(b.combine(losses, np.ones(3, "float32"))) == pytest.approx(expected, rel=1e-6)
    w = b.current_weights()
    assert w["shape"] == pytest.approx(math.exp(-0.5), rel=1e-5)
    assert w["count"] == pytest.approx(0.5 * math.exp(1.0), rel=1e-5)


def test_uncertainty_absent_task_and_replica_scale():
    b = Uncertainty(tasks=["a", "b"], kinds=["classification", "classification"])
    b.log_vars.assign([1.0, 3.0])
    present = np.array([1.0, 0.0], "float32")
    losses = np.array([2.0, 0.0], "float32")
    # Task b has no label: neither its loss nor its 1/2·s_b term counts.
    assert float(b.combine(losses, present)) == pytest.approx(math.exp(-1) * 2 + 0.5, rel=1e-6)
    # Two replicas each add half the regulariser, so their sum counts it once.
    assert float(b.combine(losses / 2, present, replica_scale=0.5)) * 2 == pytest.approx(math.exp(-1) * 2 + 0.5, rel=1e-6)


def test_uncertainty_optimum_is_the_loss_level():
    # d/ds [exp(-s)·L + s/2] = 0  at  s = log(2L): the learned variance tracks the task's loss.
    b = Uncertainty(tasks=["a"], kinds=["classification"])
    import tensorflow as tf

    for _ in range(300):
        with tf.GradientTape() as tape:
            value = b.combine(tf.constant([3.0]), tf.constant([1.0]))
        (g,) = tape.gradient(value, [b.log_vars.value])
        b.log_vars.assign_sub(0.1 * g)
    assert float(b.log_vars.numpy()[0]) == pytest.approx(math.log(6.0), abs=1e-3)


# ----- DWA ----------------------------------------------------------------------------------------
def test_dwa_weights_for_a_loss_history():
    # w = L(t-1)/L(t-2) = (0.5, 1.0, 2.0); λ = 3·softmax(w / 2)
    previous, before = [1.0, 3.0, 4.0], [2.0, 3.0, 2.0]
    e = [math.exp(0.25), math.exp(0.5), math.exp(1.0)]
    expected = [3 * v / sum(e) for v in e]
    np.testing.assert_allclose(dwa_weights(previous, before, temperature=2.0), expected, rtol=1e-9)
    assert sum(dwa_weights(previous, before)) == pytest.approx(3.0)


def test_dwa_balancer_waits_two_epochs_then_follows_the_rates():
    b = DWA(tasks=["a", "b"], temperature=1.0)

    def epoch(index, means):  # one step with 8 labels of each task, then the epoch's end
        b.observe(np.array(means, "float32"), np.full(2, 8.0, "float32"))
        b.on_epoch_end(index, {})

    epoch(0, [4.0, 1.0])
    assert b.current_weights() == {"a": 1.0, "b": 1.0}
    epoch(1, [2.0, 1.0])  # a halves, b stays: b gets more weight
    w = b.current_weights()
    assert w["b"] > 1.0 > w["a"]
    assert w["a"] == pytest.approx(2 * math.exp(0.5) / (math.exp(0.5) + math.exp(1.0)), rel=1e-5)
    epoch(2, [2.0, 0.5])  # the roles swap
    w = b.current_weights()
    assert w["a"] > 1.0 > w["b"]


# ----- GradNorm -----------------------------------------------------------------------------------
def test_gradnorm_target_norms_by_hand():
    norms, ratios = [1.0, 3.0], [1.0, 0.5]
    # Ḡ = 2; r = L̃ / mean(L̃) = (4/3, 2/3)
    np.testing.assert_allclose(np.asarray(gradnorm_targets(norms, ratios, alpha=1.0)), [8 / 3, 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(gradnorm_targets(norms, ratios, alpha=1.5)), [2 * (4 / 3) ** 1.5, 2 * (2 / 3) ** 1.5], rtol=1e-6
    )
    # alpha = 0 asks for equal norms.
    np.testing.assert_allclose(np.asarray(gradnorm_targets(norms, ratios, alpha=0.0)), [2.0, 2.0], rtol=1e-6)


def test_gradnorm_targets_ignore_absent_tasks():
    t = np.asarray(gradnorm_targets([1.0, 3.0, 50.0], [1.0, 1.0, 9.0], alpha=1.0, present=[1.0, 1.0, 0.0]))
    np.testing.assert_allclose(t, [2.0, 2.0, 0.0], rtol=1e-6)


def test_gradnorm_update_moves_weights_toward_targets_and_keeps_their_sum():
    b = GradNorm(tasks=["a", "b", "c"], alpha=1.0, learning_rate=0.1)
    b.initial_losses.assign([1.0, 1.0, 1.0])
    # Equal loss ratios: the targets are the mean norm; a's norm is too large, c's too small.
    b._update(np.array([3.0, 2.0, 1.0], "float32"), np.array([0.5, 0.5, 0.5], "float32"), np.ones(3, "float32"))
    w = b.current_weights()
    assert w["a"] < 1.0 < w["c"]
    assert sum(w.values()) == pytest.approx(3.0, rel=1e-5)


def test_gradnorm_records_initial_loss_when_a_task_has_had_its_first_labelled_steps():
    b = GradNorm(tasks=["a", "b"], initial_steps=1)
    b.observe(np.array([2.0, 0.0], "float32"), np.array([4.0, 0.0], "float32"))
    b._update(np.array([1.0, 0.0], "float32"), np.array([2.0, 0.0], "float32"), np.array([1.0, 0.0], "float32"))
    np.testing.assert_allclose(b.initial_losses.numpy(), [2.0, 0.0])
    assert b.current_weights()["b"] == pytest.approx(b.current_weights()["a"])  # b untouched, a alone: no change
    b.observe(np.array([1.0, 5.0], "float32"), np.array([4.0, 2.0], "float32"))
    np.testing.assert_allclose(b.initial_losses.numpy(), [2.0, 5.0])


# ----- registry and options -----------------------------------------------------------------------
def test_registry_names_and_errors():
    assert {"static", "uncertainty", "dwa", "gradnorm", "pcgrad", "rlw", "famo", "gls"} <= set(BALANCERS)
    assert get_balancer("static") is None and get_balancer(None) is None
    with pytest.raises(MtlError, match="unknown balancer 'grad_norm'; available: .*dwa, .*gradnorm"):
        get_balancer("grad_norm")
    with pytest.raises(MtlError, match="must be a name"):
        get_balancer(3.0)


@pytest.mark.parametrize(
    "balancer", [Uncertainty(initial_log_var=0.5), DWA(temperature=3.0), GradNorm(alpha=0.5, learning_rate=0.1)]
)
def test_options_survive_serialization(balancer):
    balancer.setup(["a", "b"], ["classification", "regression"])
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(balancer))
    assert type(again) is type(balancer)
    assert again.get_config() == balancer.get_config()
    assert again.task_names == ["a", "b"]


def test_balancer_refuses_other_tasks():
    b = get_balancer("dwa", tasks=["a", "b"])
    with pytest.raises(MtlError, match="set up for tasks"):
        b.setup(["a", "c"])


# ----- strategies ---------------------------------------------------------------------------------
def test_strategy_names(monkeypatch):
    assert get_strategy("default").num_replicas_in_sync == 1
    assert get_strategy("auto").num_replicas_in_sync == 1  # no GPUs in the test environment
    with pytest.raises(MtlError, match="unknown strategy 'tpu'; available: auto, default, mirrored, multiworker"):
        get_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(MtlError, match="needs TF_CONFIG"):
        get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(MtlError, match="not valid JSON"):
        get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(MtlError, match="not in its cluster"):
        get_strategy("multiworker")
