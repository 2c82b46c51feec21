"""Loss-level balancers against their update rules worked by hand: RLW, FAMO, GLS, DWA's masked epoch
means, GradNorm's L_i(0); absent tasks; distribution (the global objective); XLA; options."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from mtl_keras.balancing import BALANCERS, DWA, FAMO, GLS, RLW, GradNorm, dwa_weights
from mtl_keras.balancing import global_objective as global_objective_module
from mtl_keras.balancing.gls import geometric_mean_loss
from mtl_keras.balancing.rlw import standard_normal
from mtl_keras.errors import MtlError


def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def normal_draws(seed, step, k):
    """RLW's documented draws, rebuilt in numpy from the raw Philox bits (Box–Muller)."""
    bits = tf.random.stateless_uniform([2, k], seed=[seed, step], minval=None, maxval=None, dtype=tf.uint32)
    u = ((bits.numpy() >> 8).astype(np.float64) + 0.5) / 2**24
    return np.sqrt(-2 * np.log(u[0])) * np.cos(2 * np.pi * u[1])


def grad_of_combine(balancer, losses, present):
    """(objective, d objective / d losses) of ``balancer.combine`` on one replica, as numpy."""
    losses = tf.constant(losses, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(losses)
        value = balancer.combine(losses, tf.constant(present, tf.float32))
    return float(value), tape.gradient(value, losses).numpy()


# ----- RLW ----------------------------------------------------------------------------------------
def test_rlw_weights_are_a_softmax_of_the_seeded_normal_draws_of_each_step():
    b = RLW(seed=11, tasks=["a", "b", "c"])
    losses = np.array([1.0, 2.0, 4.0], "float32")
    seen = []
    for step in range(3):
        value, grad = grad_of_combine(b, losses, [1.0, 1.0, 1.0])
        expected = softmax(normal_draws(11, step, 3))
        np.testing.assert_allclose(grad, expected, rtol=1e-5)
        np.testing.assert_allclose(b.task_weights().numpy(), expected, rtol=1e-5)
        assert value == pytest.approx(float(expected @ losses), rel=1e-5)
        seen.append(grad)
    assert not np.allclose(seen[0], seen[1])  # a new draw every step
    assert b.rng_state.numpy().tolist() == [11, 3]


def test_rlw_draws_are_standard_normal():
    z = standard_normal(9, 0, 20000).numpy()
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    assert abs(np.mean(z > 1.0) - 0.1587) < 0.01  # the normal tail, not just two moments


def test_rlw_softmax_runs_over_the_present_tasks_only():
    b = RLW(seed=4, tasks=["a", "b", "c"])
    _, grad = grad_of_combine(b, [1.0, 0.0, 3.0], [1.0, 0.0, 1.0])
    draws = normal_draws(4, 0, 3)
    np.testing.assert_allclose(grad[[0, 2]], softmax(draws[[0, 2]]), rtol=1e-5)
    assert grad[1] == 0.0 and grad.sum() == pytest.approx(1.0, rel=1e-6)


def test_rlw_seed_defaults_to_the_global_generator_and_the_state_resumes():
    state = np.random.get_state()
    try:
        np.random.seed(5)
        first = RLW().seed
        np.random.seed(5)
        assert RLW().seed == first
    finally:
        np.random.set_state(state)
    b = RLW(seed=2, tasks=["a", "b"])
    for _ in range(4):
        b.combine(ops.ones(2), ops.ones(2))
    resumed = RLW(seed=2, tasks=["a", "b"])
    resumed.set_weights(b.get_weights())
    b.combine(ops.ones(2), ops.ones(2))
    resumed.combine(ops.ones(2), ops.ones(2))
    np.testing.assert_array_equal(resumed.task_weights().numpy(), b.task_weights().numpy())


# ----- FAMO ---------------------------------------------------------------------------------------
def famo_by_hand(batches, lr=0.025, decay=1e-3, eps=1e-8):
    """FAMO step by step in numpy: logits, weights per step (Adam with L2 decay, per-logit steps)."""
    k = len(batches[0][0])
    xi, m, v, n = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k)
    previous, has_previous = np.zeros(k), np.zeros(k, bool)
    out = []
    for losses, present in batches:
        losses, present = np.asarray(losses, np.float64), np.asarray(present, bool)
        idx = present & has_previous
        if idx.any():
            z = softmax(xi[idx])
            delta = np.log(previous[idx] + eps) - np.log(losses[idx] + eps)
            g = z * (delta - z @ delta) + decay * xi[idx]
            n[idx] += 1
            m[idx] = 0.9 * m[idx] + 0.1 * g
            v[idx] = 0.999 * v[idx] + 0.001 * g * g
            m_hat, v_hat = m[idx] / (1 - 0.9 ** n[idx]), v[idx] / (1 - 0.999 ** n[idx])
            xi[idx] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        previous[present], has_previous = losses[present], has_previous | present
        z = softmax(xi[present])
        d = losses[present] + eps
        weights = np.zeros(k)
        weights[present] = z / d / np.sum(z / d)
        objective = np.sum(z * np.log(d)) / np.sum(z / d)
        out.append((xi.copy(), weights, objective))
    return out


def test_famo_logits_follow_the_log_loss_decrease_with_adam():
    batches = [
        ([2.0, 1.0, 4.0], [1, 1, 1]),
        ([1.5, 0.9, 4.2], [1, 1, 1]),  # a falls most: its logit drops, c rose: its logit grows
        ([1.0, 0.0, 3.0], [1, 0, 1]),  # b absent: no term, no update of its logit or moments
        ([0.8, 0.7, 2.9], [1, 1, 1]),  # b's δ spans back to its last labelled step
    ]
    b = FAMO(tasks=["a", "b", "c"])
    expected = famo_by_hand(batches)
    for (losses, present), (xi, weights, objective) in zip(batches, expected):
        moment_b = float(b.moment_1[1])
        value, grad = grad_of_combine(b, losses, present)
        np.testing.assert_allclose(b.logits.numpy(), xi, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(grad, weights, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b.task_weights().numpy(), weights, rtol=1e-5, atol=1e-7)
        assert value == pytest.approx(objective, rel=1e-5)
        assert grad.sum() == pytest.approx(1.0, rel=1e-6)
        if not present[1]:
            assert float(b.moment_1[1]) == moment_b and grad[1] == 0.0
    first_move = expected[1][0]
    assert first_move[0] < 0 < first_move[2]
    # Adam's first step moves each logit by the learning rate (the decay term is 0 at ξ = 0).
    np.testing.assert_allclose(np.abs(first_move), 0.025, rtol=1e-4)
    assert b.adam_steps.numpy().tolist() == [3.0, 2.0, 3.0]


# ----- GLS ----------------------------------------------------------------------------------------
def test_gls_is_the_geometric_mean_with_slopes_gls_over_k_l():
    losses = np.array([0.5, 2.0, 8.0, 3.0], "float32")
    b = GLS(tasks=list("abcd"), epsilon=0.0)
    value, grad = grad_of_combine(b, losses, [1, 1, 1, 1])
    gls = np.prod(losses.astype(np.float64)) ** 0.25
    assert value == pytest.approx(gls, rel=1e-6)
    np.testing.assert_allclose(grad, gls / (4 * losses), rtol=1e-5)
    np.testing.assert_allclose(b.task_weights().numpy(), gls / (4 * losses), rtol=1e-5)
    # An absent task leaves the product: K is the number present.
    value, grad = grad_of_combine(b, [0.5, 0.0, 8.0, 3.0], [1, 0, 1, 1])
    gls3 = (0.5 * 8.0 * 3.0) ** (1 / 3)
    assert value == pytest.approx(gls3, rel=1e-6)
    np.testing.assert_allclose(grad, [gls3 / 1.5, 0.0, gls3 / 24, gls3 / 9], rtol=1e-5)


def test_global_objective_sums_to_the_global_gradient_over_replicas(monkeypatch):
    # Two replicas' shares of the global losses: each replica sees its share, all_reduce the sum.
    shares = [np.array([0.5, 1.5, 1.0], "float32"), np.array([1.5, 0.5, 7.0], "float32")]
    total = shares[0] + shares[1]
    monkeypatch.setattr(global_objective_module, "all_reduce", lambda _: tf.constant(total))
    b = GLS(tasks=["a", "b", "c"], epsilon=0.0)
    values, grads = zip(*(grad_of_combine_scaled(b, s, 0.5) for s in shares))
    gls = np.prod(total.astype(np.float64)) ** (1 / 3)
    assert sum(values) == pytest.approx(gls, rel=1e-6)
    for g in grads:  # the slopes at the global losses, not at a replica's share
        np.testing.assert_allclose(g, gls / (3 * total), rtol=1e-5)


def grad_of_combine_scaled(balancer, losses, replica_scale):
    losses = tf.constant(losses, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(losses)
        value = balancer.combine(losses, tf.ones(3), replica_scale)
    return float(value), tape.gradient(value, losses).numpy()


# ----- absent tasks and XLA -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rlw", "famo", "gls"])
def test_an_absent_task_adds_nothing(name):
    options = {"seed": 1} if name == "rlw" else {}
    b, again = (BALANCERS[name](tasks=["a", "b", "c"], **options) for _ in range(2))
    present = [1.0, 0.0, 1.0]
    value, grad = grad_of_combine(b, [1.0, 0.0, 2.0], present)
    # Whatever the absent task's loss entry holds, it changes neither the objective nor the state.
    value_again, _ = grad_of_combine(again, [1.0, 5.0, 2.0], present)
    assert grad[1] == 0.0
    assert value_again == pytest.approx(value, rel=1e-6)
    for x, y in zip(b.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_rlw_draws_the_same_under_xla():
    # XLA turns random bits into floats its own way; RLW's draws must not depend on how a step is traced.
    b = RLW(seed=3, tasks=["a", "b", "c"])
    step = tf.function(lambda: b.combine(tf.constant([2.0, 1.0, 1.0]), tf.ones(3)), jit_compile=True)
    for k in range(2):
        step()
        np.testing.assert_allclose(b.task_weights().numpy(), softmax(normal_draws(3, k, 3)), rtol=1e-5)


# ----- DWA: masked epoch means --------------------------------------------------------------------
def test_dwa_epoch_losses_are_masked_means_and_an_unlabelled_task_keeps_rate_1():
    b = DWA(tasks=["a", "b", "c"], temperature=2.0)
    observe = tf.function(b.observe)  # the training step calls it in the graph
    epochs = [
        # (losses, counts) per batch: b lacks labels in the middle batch, c in the whole epoch
        [([2.0, 3.0, 0.0], [4, 2, 0]), ([1.0, 0.0, 0.0], [4, 0, 0]), ([3.0, 1.0, 0.0], [4, 6, 0])],
        [([1.0, 3.0, 0.5], [4, 1, 2]), ([1.0, 0.0, 0.5], [4, 0, 2])],
    ]
    for epoch, batches in enumerate(epochs):
        for losses, counts in batches:
            observe(tf.constant(losses), tf.constant(counts, tf.float32))
        b.on_epoch_end(epoch, {"a": -1.0, "b": -1.0, "c": -1.0})  # Keras' diluted logs are not used
        assert b.loss_sums.numpy().tolist() == [0.0, 0.0, 0.0] == b.label_counts.numpy().tolist()
    # Epoch 0: a = 24/12 = 2, b = (6 + 6)/8 = 1.5 (Keras' per-batch mean would be 4/3), c: none.
    np.testing.assert_allclose(b.history.numpy(), [[1.0, 3.0, 0.5], [2.0, 1.5, 0.0]], rtol=1e-6)
    # Rates: a 1/2, b 3/1.5, c without epoch 0: 1.
    np.testing.assert_allclose(b.task_weights().numpy(), 3 * softmax(np.array([0.5, 2.0, 1.0]) / 2), rtol=1e-5)
    np.testing.assert_allclose(b.task_weights().numpy(), dwa_weights([1, 3, 0.5], [2, 1.5, np.nan]), rtol=1e-5)


# ----- GradNorm: L_i(0) over the first labelled steps ---------------------------------------------
def test_gradnorm_initial_loss_is_the_count_weighted_mean_of_the_first_labelled_steps():
    b = GradNorm(tasks=["a", "b"], initial_steps=3)
    observe = tf.function(b.observe)
    steps = [
        ([2.0, 0.0], [1, 0]),
        ([4.0, 5.0], [3, 2]),
        ([0.0, 0.0], [0, 0]),  # no labels: not one of the first steps
        ([3.0, 2.0], [2, 1]),  # a's third labelled step
        ([9.0, 7.0], [5, 3]),  # b's third; a has its L(0) already
        ([1.0, 1.0], [1, 1]),
    ]
    initial = []
    for losses, counts in steps:
        observe(tf.constant(losses), tf.constant(counts, tf.float32))
        initial.append(b.initial_losses.numpy().copy())
    a0, b0 = (2 * 1 + 4 * 3 + 3 * 2) / 6, (5 * 2 + 2 * 1 + 7 * 3) / 6
    np.testing.assert_allclose(initial[2], [0.0, 0.0])
    np.testing.assert_allclose(initial[3], [a0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(initial[4], [a0, b0], rtol=1e-6)
    np.testing.assert_allclose(initial[5], [a0, b0], rtol=1e-6)


def test_gradnorm_task_without_initial_loss_trains_at_the_average_pace():
    b = GradNorm(tasks=["a", "b"], alpha=1.5, learning_rate=0.1)
    b.initial_losses.assign([1.0, 0.0])
    # a has doubled its loss, b has no L(0): both at relative rate 1, equal norms are on target.
    b._update(np.array([1.0, 1.0], "float32"), np.array([2.0, 9.0], "float32"), np.ones(2, "float32"))
    assert b.current_weights() == {"a": 1.0, "b": 1.0}
    b.initial_losses.assign([1.0, 9.0])  # now b has not moved while a doubled: b gets a lower target
    b._update(np.array([1.0, 1.0], "float32"), np.array([2.0, 9.0], "float32"), np.ones(2, "float32"))
    w = b.current_weights()
    assert w["a"] > 1.0 > w["b"]


# ----- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, options",
    [
        (RLW, {"seed": 123}),
        (FAMO, {"learning_rate": 0.01, "weight_decay": 0.01, "epsilon": 1e-6, "beta_1": 0.8, "beta_2": 0.99,
                "adam_epsilon": 1e-7}),
        (GLS, {"epsilon": 1e-5}),
        (GradNorm, {"alpha": 0.5, "learning_rate": 0.1, "layer": None, "initial_steps": 4}),
    ],
)
def test_options_and_state_survive_serialization(cls, options):
    balancer = cls(tasks=["a", "b"], **options)
    if not balancer.needs_task_gradients:
        balancer.combine(ops.array([1.0, 2.0]), ops.ones(2))  # some state to carry over
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(balancer))
    assert type(again) is cls and again.task_names == ["a", "b"]
    assert {k: again.get_config()[k] for k in options} == options
    again.set_weights(balancer.get_weights())
    np.testing.assert_array_equal(again.task_weights().numpy(), balancer.task_weights().numpy())


def test_bad_options_are_refused():
    with pytest.raises(MtlError, match="initial_steps must be at least 1"):
        GradNorm(initial_steps=0)


def test_geometric_mean_of_no_task_is_zero():
    value, slopes = geometric_mean_loss(ops.array([1.0, 2.0]), ops.zeros(2))
    assert float(value) == 0.0 and slopes.numpy().tolist() == [0.0, 0.0]
