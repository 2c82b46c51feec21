"""The Gramian rules of IMTL, Aligned-MTL, GradVac, PCGrad and DB-MTL on hand-made gradient sets.

Pure math on K×K matrices: each rule's defining property (equal projections, condition number 1,
the paper's vector-form algorithm, the plain sum without conflict, equal contributions), absent and
zero-gradient tasks, degenerate sets, XLA, and the options through serialization.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.balancing import (
    DBMTL,
    IMTL,
    AlignedMTL,
    GradVac,
    PCGrad,
    aligned_mtl_matrix,
    aligned_mtl_weights,
    db_mtl_weights,
    get_balancer,
    gradvac_coefficients,
    imtl_weights,
)

ORTHOGONAL = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
CONFLICTING = np.array([[1.0, 0.0, 0.0], [-0.8, 0.6, 0.0], [0.3, -2.0, 1.0]])
IDENTICAL = np.array([[1.0, 2.0, 2.0]] * 3)
ONE_ZERO = np.array([[1.0, 0.0, 0.0], [-0.5, 1.5, 0.0], [0.0, 0.0, 0.0]])
OPPOSITE = np.array([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0], [0.0, 0.0, 3.0]])
ALL_ZERO = np.zeros((3, 3))
KEYS = ["imtl", "aligned_mtl", "gradvac", "pcgrad", "db_mtl"]


def gram_of(g):
    g = np.asarray(g, np.float64)
    return (g @ g.T).astype("float32")


def ones(k):
    return np.ones(k, "float32")


def rule(key, g, present=None, **options):
    """The coefficients a fresh balancer's rule gives (float64 numpy)."""
    g = np.asarray(g)
    b = get_balancer(key) if not options else type(get_balancer(key))(**options)
    b.setup([f"t{k}" for k in range(len(g))])
    present = ones(len(g)) if present is None else np.asarray(present, "float32")
    return np.asarray(b.rule(gram_of(g), np.zeros(len(g), "float32"), present), np.float64)


def unit_projections(c, g):
    g = np.asarray(g, np.float64)
    return g @ (c @ g) / np.linalg.norm(g, axis=1)


# ----- IMTL-G -------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", [ORTHOGONAL, CONFLICTING, np.random.default_rng(3).normal(size=(4, 6)) * [[1], [30], [0.05], [2]]])
def test_imtl_aggregate_has_equal_projections_on_the_unit_gradients(g):
    alpha = np.asarray(imtl_weights(gram_of(g), ones(len(g))), np.float64)
    assert alpha.sum() == pytest.approx(1.0, abs=1e-5)
    projections = unit_projections(alpha, g)
    np.testing.assert_allclose(projections, projections[0], rtol=1e-4)
    # Not the mean: the rule moved the weights (the equal-projection condition is not trivial here).
    assert np.ptp(unit_projections(np.full(len(g), 1 / len(g)), g)) > 0.1 * abs(projections[0])


def test_imtl_orthogonal_weights_are_inverse_to_the_norms():
    alpha = rule("imtl", ORTHOGONAL, loss_scale=False)
    np.testing.assert_allclose(alpha, [1 / 1, 1 / 2, 1 / 0.5] / np.sum([1, 1 / 2, 2]), rtol=1e-5)


def test_imtl_degenerate_sets():
    np.testing.assert_allclose(rule("imtl", IDENTICAL), [1 / 3] * 3, rtol=1e-5)
    # g2 = −g1: the only aggregate with equal projections on u1, u2 and u3 is 0.
    alpha = rule("imtl", OPPOSITE)
    assert np.isfinite(alpha).all() and alpha.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(alpha @ OPPOSITE, 0.0, atol=1e-5)
    # A zero gradient has no direction: that task takes no part, the others get IMTL-G of their own.
    alpha = rule("imtl", ONE_ZERO)
    np.testing.assert_allclose(alpha, list(rule("imtl", ONE_ZERO[:2])) + [0.0], atol=1e-6)
    assert alpha[2] == 0.0


def test_imtl_loss_scales_follow_imtl_l():
    b = IMTL(tasks=["a", "b"])
    b.log_scales.assign([0.5, -1.0])
    losses = tf.constant([2.0, 3.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(losses)
        total = tf.reduce_sum(b.transform_losses(losses, ones(2)))
    s = np.array([0.5, -1.0])
    # The scales get e^s·L − 1 (IMTL-L's gradient), the task gradients are scaled by e^s.
    np.testing.assert_allclose(tape.gradient(total, b.log_scales.value), np.exp(s) * [2, 3] - 1, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(total, losses), np.exp(s), rtol=1e-5)
    assert b.log_scales.trainable and not IMTL(loss_scale=False, tasks=["a"]).trainable_weights
    np.testing.assert_allclose(IMTL(loss_scale=False, tasks=["a", "b"]).transform_losses(losses, ones(2)), [2, 3])


# ----- Aligned-MTL --------------------------------------------------------------------------------
def aligned_reference(g, scale="min"):
    """Aligned-MTL on the vectors: σ·U_r V_rᵀ·1 from the SVD of G = [g_1 … g_K] (Senushkin et al. 2023)."""
    u, s, vt = np.linalg.svd(np.asarray(g, np.float64).T, full_matrices=False)
    r = int((s**2 > s.max() ** 2 * len(g) * np.finfo(np.float32).eps).sum())
    kept = np.sort(s[:r] ** 2)
    sigma = np.sqrt({"min": kept[0], "median": kept[(r - 1) // 2], "rmse": kept.mean()}[scale])
    return sigma * u[:, :r] @ vt[:r] @ np.ones(len(g))


@pytest.mark.parametrize("scale", ["min", "median", "rmse"])
@pytest.mark.parametrize("g", [ORTHOGONAL, CONFLICTING, IDENTICAL, OPPOSITE, np.random.default_rng(0).normal(size=(4, 7)) * [[1], [10], [0.1], [3]]])
def test_aligned_mtl_matches_the_svd_of_the_gradients(g, scale):
    c = np.asarray(aligned_mtl_weights(gram_of(g), ones(len(g)), scale), np.float64)
    expected = aligned_reference(g, scale)
    np.testing.assert_allclose(c @ g, expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("g", [CONFLICTING, OPPOSITE, np.random.default_rng(1).normal(size=(4, 7)) * [[1], [10], [0.1], [3]]])
def test_aligned_gradients_have_condition_number_one(g):
    b = np.asarray(aligned_mtl_matrix(gram_of(g), ones(len(g))), np.float64)
    aligned = np.asarray(g, np.float64).T @ b  # Ĝ = G·B, one aligned gradient per column
    s = np.linalg.svd(aligned, compute_uv=False)
    rank = np.linalg.matrix_rank(np.asarray(g, np.float64))
    np.testing.assert_allclose(s[:rank], s[0], rtol=1e-4)  # condition number 1 on the span
    np.testing.assert_allclose(s[rank:], 0.0, atol=1e-5 * s[0])
    # σ_min of the original gradients is the common value (the paper's scale).
    assert s[0] == pytest.approx(np.linalg.svd(np.asarray(g, np.float64).T, compute_uv=False)[rank - 1], rel=1e-4)
    assert np.linalg.cond(np.asarray(g, np.float64)[:rank].T) > 1.5  # the originals were not aligned


def test_aligned_identical_gradients_give_the_plain_sum():
    np.testing.assert_allclose(rule("aligned_mtl", IDENTICAL), [1.0, 1.0, 1.0], rtol=1e-5)


# ----- GradVac ------------------------------------------------------------------------------------
def gradvac_reference(grads, orders, targets, present, beta):
    """GradVac on the vectors themselves (Wang et al. 2021, Algorithm 1; pairs with an absent or zero task skipped)."""
    grads = np.asarray(grads, np.float64)
    targets = np.asarray(targets, np.float64)
    norms = np.linalg.norm(grads, axis=1)
    active = (np.asarray(present) > 0) & (norms > 0)
    new = targets.copy()
    total = np.zeros(grads.shape[1])
    for i, g in enumerate(grads):
        if not present[i]:
            continue
        g = g.copy()
        for j in orders[i]:
            if j == i or not (active[i] and active[j]):
                continue
            phi = g @ grads[j] / (np.linalg.norm(g) * norms[j])
            t = targets[i, j]
            if phi < t:
                g = g + np.linalg.norm(g) * (t * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - t**2)) / (
                    norms[j] * np.sqrt(1 - t**2)
                ) * grads[j]
            new[i, j] = (1 - beta) * t + beta * phi
        total += g
    return total, new


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradvac_gram_form_matches_vector_form(seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(4, 6)) * [[1], [5], [0.2], [1]]
    g[1] = -g[0] + 0.4 * rng.normal(size=6)
    orders = [list(rng.permutation(4)) for _ in range(4)]
    targets = rng.uniform(-0.5, 0.8, size=(4, 4)).astype("float32")
    present = np.array([1, 1, 1, 1], "float32") if seed else np.array([1, 1, 0, 1], "float32")
    g[present == 0] = 0.0
    c, new = gradvac_coefficients(gram_of(g), orders, targets, present, 0.3)
    expected, expected_targets = gradvac_reference(g, orders, targets, present, 0.3)
    np.testing.assert_allclose(np.asarray(c, np.float64) @ g, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new), expected_targets, atol=1e-5)
    assert not np.allclose(expected, g.sum(0))  # some pair was below its target
    if not seed:
        assert float(c[2]) == 0.0
        np.testing.assert_array_equal(np.asarray(new)[2], targets[2])  # an absent task's targets stay
        np.testing.assert_array_equal(np.asarray(new)[:, 2], targets[:, 2])


def test_gradvac_lifts_a_pair_to_its_target_and_moves_the_target():
    g = np.array([[1.0, 0.0], [-0.6, 0.8]])  # unit gradients, cos −0.6
    b = GradVac(tasks=["a", "b"], beta=0.25)
    b.targets.assign([[0.0, 0.3], [0.3, 0.0]])
    c = np.asarray(b.rule(gram_of(g), np.zeros(2, "float32"), ones(2)), np.float64)
    # Each task adds w·g_other once (two tasks: the order does not matter), w from the paper's formula.
    w = (0.3 * 0.8 + 0.6 * np.sqrt(1 - 0.3**2)) / np.sqrt(1 - 0.3**2)
    np.testing.assert_allclose(c, [1 + w, 1 + w], rtol=1e-5)
    lifted = g[0] + w * g[1]
    assert lifted @ g[1] / np.linalg.norm(lifted) == pytest.approx(0.3, abs=1e-9)  # the target cosine, exactly
    moved = 0.75 * 0.3 + 0.25 * -0.6  # (1 − β)·φ̂ + β·φ, φ taken before the lift
    np.testing.assert_allclose(np.asarray(b.targets), [[0.0, moved], [moved, 0.0]], atol=1e-6)
    assert int(b.steps.value) == 1


def test_gradvac_with_zero_targets_is_pcgrad_for_two_tasks():
    # φ̂ = 0: the lift to cosine 0 is PCGrad's projection (the paper's remark); the EMA then moves φ̂ to β·φ.
    g = CONFLICTING[:2]
    np.testing.assert_allclose(rule("gradvac", g), rule("pcgrad", g), rtol=1e-5)


# ----- PCGrad -------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", [ORTHOGONAL, IDENTICAL, np.abs(np.random.default_rng(4).normal(size=(4, 5)))])
def test_pcgrad_without_conflict_is_the_plain_sum(g):
    assert (np.asarray(g) @ np.asarray(g).T >= 0).all()
    np.testing.assert_allclose(rule("pcgrad", g), np.ones(len(g)), rtol=1e-6)


def test_pcgrad_rule_uses_its_step_counter_for_the_orders():
    from test_balancers import pcgrad_reference

    g = np.random.default_rng(5).normal(size=(3, 6))
    b = PCGrad(tasks=["a", "b", "c"], seed=4)
    for step in range(3):
        c = np.asarray(b.rule(gram_of(g), np.zeros(3, "float32"), ones(3)), np.float64)
        np.testing.assert_allclose(c @ g, pcgrad_reference(g, np.asarray(b.task_orders(step))), rtol=1e-4, atol=1e-5)
    assert int(b.steps.value) == 3


# ----- DB-MTL -------------------------------------------------------------------------------------
def test_db_mtl_log_loss_contributions_are_equal_to_the_largest():
    # L_k(θ) = a_k·‖θ − t_k‖²: scales from 0.01 to 100; DB-MTL differentiates log L_k.
    theta = tf.Variable([0.3, -0.2, 0.5])
    scales = tf.constant([0.01, 1.0, 100.0])
    centres = tf.constant([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-1.0, 1.0, 1.0]])
    b = DBMTL(tasks=["a", "b", "c"])
    with tf.GradientTape(persistent=True) as tape:
        losses = scales * tf.reduce_sum((theta[None, :] - centres) ** 2, axis=1)
        logs = b.transform_losses(losses, ones(3))
        each_log, each_loss = [logs[k] for k in range(3)], [losses[k] for k in range(3)]
    np.testing.assert_allclose(logs, np.log(losses.numpy() + 1e-8), rtol=1e-6)
    g = np.stack([tape.gradient(each_log[k], theta).numpy() for k in range(3)]).astype(np.float64)
    raw = np.stack([tape.gradient(each_loss[k], theta).numpy() for k in range(3)])
    np.testing.assert_allclose(g, raw / losses.numpy()[:, None], rtol=1e-5)  # ∇L/L: the loss scale is gone
    alpha = np.asarray(b.rule(gram_of(g), logs, ones(3)), np.float64)
    contributions = np.linalg.norm(alpha[:, None] * g, axis=1)
    np.testing.assert_allclose(contributions, np.linalg.norm(g, axis=1).max(), rtol=1e-5)
    assert alpha.max() > 1.5  # the norms differed


def test_db_mtl_running_norms_follow_the_bias_corrected_average():
    b = DBMTL(tasks=["a", "b"], beta=0.5, beta_sigma=0.5)
    steps = [([2.0, 1.0], [1, 1]), ([4.0, 7.0], [1, 0]), ([1.0, 3.0], [1, 1])]
    average, start, seen = np.zeros(2), np.ones(2), np.zeros(2)
    for norms, present in steps:
        present = np.asarray(present, float)
        alpha = np.asarray(b.rule(np.diag(np.square(norms)).astype("float32"), np.zeros(2, "float32"), present.astype("float32")))
        seen += present
        rate = 0.5 / np.maximum(seen, 1) ** 0.5
        average = np.where(present > 0, rate * average + (1 - rate) * np.asarray(norms), average)
        start = np.where(present > 0, rate * start, start)
        estimates = average / (1 - start)
        np.testing.assert_allclose(b.norm_estimates(), estimates, rtol=1e-5)
        np.testing.assert_allclose(alpha, present * (estimates * present).max() / estimates, rtol=1e-5)
    # Step 2 left b's estimate alone (absent), and the first step's estimate was the norm itself.
    assert b.norm_estimates().numpy()[1] != pytest.approx(7.0)
    np.testing.assert_allclose(db_mtl_weights([2.0, 1.0], ones(2)), [1.0, 2.0])


# ----- every rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", KEYS)
def test_absent_task_gets_zero_and_the_others_the_sub_problem(key):
    g = CONFLICTING.copy()
    g[1] = 0.0  # the engine's Gramian has a zero row and column for an absent task
    present = np.array([1.0, 0.0, 1.0], "float32")
    c = rule(key, g, present)
    assert c[1] == 0.0
    sub = g[[0, 2]]
    if key == "pcgrad":
        from test_balancers import pcgrad_reference

        orders = np.asarray(PCGrad(tasks=["a", "b", "c"]).task_orders(0))
        expected = pcgrad_reference(sub, [[{0: 0, 2: 1}[j] for j in row if j != 1] for row in orders[[0, 2]]])
        np.testing.assert_allclose(c @ g, expected, rtol=1e-5)
    elif key == "gradvac":
        orders = np.asarray(GradVac(tasks=["a", "b", "c"]).task_orders(0))
        expected, _ = gradvac_reference(g, orders, np.zeros((3, 3)), present, 0.01)
        np.testing.assert_allclose(c @ g, expected, rtol=1e-5)
        np.testing.assert_allclose(c[[0, 2]], rule(key, sub), rtol=1e-5)  # two tasks: no order to differ
    else:
        np.testing.assert_allclose(c[[0, 2]], rule(key, sub), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("g", [IDENTICAL, ONE_ZERO, OPPOSITE, ALL_ZERO], ids=["identical", "one_zero", "opposite", "all_zero"])
@pytest.mark.parametrize("key", KEYS)
def test_weights_are_finite_on_degenerate_sets(key, g):
    c = rule(key, g)
    assert np.isfinite(c).all(), c
    assert np.isfinite(c @ g).all()
    if g is IDENTICAL:
        assert c @ g @ g[0] > 0  # still a descent direction for the common task


@pytest.mark.parametrize("key", KEYS)
def test_rule_runs_under_xla_like_eager(key):
    g = CONFLICTING
    eager, jitted = get_balancer(key, tasks=["a", "b", "c"]), get_balancer(key, tasks=["a", "b", "c"])
    compiled = tf.function(jitted.rule, jit_compile=True)
    gram, present = tf.constant(gram_of(g)), tf.constant([1.0, 1.0, 1.0])
    for _ in range(2):  # the second step reads the state the first one wrote
        expected = eager.rule(gram, tf.zeros(3), present)
        np.testing.assert_allclose(compiled(gram, tf.zeros(3), present), expected, rtol=1e-4, atol=1e-6)
    for mine, theirs in zip(eager.non_trainable_weights, jitted.non_trainable_weights):
        np.testing.assert_allclose(np.asarray(theirs.value), np.asarray(mine.value), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "balancer",
    [
        IMTL(loss_scale=False, grad_level="parameters"),
        AlignedMTL(scale="rmse"),
        GradVac(beta=0.5, seed=3),
        PCGrad(seed=7, grad_level="parameters"),
        DBMTL(beta=0.8, beta_sigma=0.5, epsilon=1e-6),
    ],
    ids=lambda b: b.key,
)
def test_options_survive_serialization(balancer):
    balancer.setup(["a", "b"])
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(balancer))
    assert type(again) is type(balancer) and again.key in KEYS
    assert again.get_config() == balancer.get_config()
    assert again.task_names == ["a", "b"]
    defaults = type(balancer)().get_config()
    assert any(defaults[k] != v for k, v in balancer.get_config().items() if k not in ("name", "tasks", "kinds"))


def test_unknown_aligned_scale_is_refused():
    from mtl_keras.errors import MtlError

    with pytest.raises(MtlError, match="scale must be one of min, median, rmse"):
        AlignedMTL(scale="max")
