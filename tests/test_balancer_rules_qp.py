"""The solver-backed Gramian rules (MGDA, CAGrad, UPGrad, Nash-MTL, FairGrad) and their solvers.

Pure math on K×K matrices: each solver against a closed form or a brute-force numpy reference,
each rule's defining property (the min-norm point of the hull, no conflict with any task, the mean
at c = 0, the bargaining equation), absent and zero-gradient tasks, degenerate sets, XLA, and the
options through serialization.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.balancing import (
    MGDA,
    CAGrad,
    FairGrad,
    NashMTL,
    UPGrad,
    cagrad_coefficients,
    get_balancer,
    mgda_weights,
    upgrad_coefficients,
)
from mtl_keras.balancing.solvers import (
    bargaining_weights,
    cagrad_dual,
    lower_bounded_qp,
    min_norm_weights,
    project_simplex,
)
from mtl_keras.errors import MtlError

ORTHOGONAL = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
CONFLICTING = np.array([[1.0, 0.0, 0.0], [-0.8, 0.6, 0.0], [0.3, -2.0, 1.0]])
AGREEING = np.array([[1.0, 0.2, 0.0], [0.5, 1.0, 0.3], [0.2, 0.1, 2.0]])  # every g_i·g_j > 0
IDENTICAL = np.array([[1.0, 2.0, 2.0]] * 3)
ONE_ZERO = np.array([[1.0, 0.0, 0.0], [-0.5, 1.5, 0.0], [0.0, 0.0, 0.0]])
OPPOSITE = np.array([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0], [0.0, 0.0, 3.0]])
ALL_ZERO = np.zeros((3, 3))
KEYS = ["mgda", "cagrad", "upgrad", "nash_mtl", "fairgrad"]
RNG_SETS = [np.random.default_rng(s).normal(size=(3, 5)) * [[1.0], [4.0], [0.3]] for s in range(3)]


def gram_of(g):
    g = np.asarray(g, np.float64)
    return (g @ g.T).astype("float32")


def rule(key, g, present=None, losses=None, **options):
    """The coefficients a fresh balancer's rule gives (float64 numpy)."""
    g = np.asarray(g)
    k = len(g)
    b = type(get_balancer(key))(**options)
    b.setup([f"t{i}" for i in range(k)])
    present = np.ones(k, "float32") if present is None else np.asarray(present, "float32")
    losses = np.ones(k, "float32") if losses is None else np.asarray(losses, "float32")
    return np.asarray(b.rule(gram_of(g), losses, present), np.float64)


def brute_force_min_norm(gram):
    """min wᵀGw on the simplex by trying every support (the KKT system of each, in float64)."""
    gram = np.asarray(gram, np.float64)
    k, best = len(gram), (np.inf, None)
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            s = list(support)
            kkt = np.block([[gram[np.ix_(s, s)], -np.ones((size, 1))], [np.ones((1, size)), np.zeros((1, 1))]])
            try:
                sol = np.linalg.solve(kkt, np.r_[np.zeros(size), 1.0])[:size]
            except np.linalg.LinAlgError:
                continue
            if (sol >= -1e-12).all():
                w = np.zeros(k)
                w[s] = sol
                if w @ gram @ w < best[0] - 1e-15:
                    best = (w @ gram @ w, w)
    return best[1]


def reference_simplex_projection(v):
    """The classic sort-based projection (Held, Wolfe & Crowder 1974; Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u - (css - 1) / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - (css[rho] - 1) / (rho + 1), 0)


# ----- solvers ------------------------------------------------------------------------------------
def test_simplex_projection_matches_the_sort_based_algorithm_and_respects_the_mask():
    rng = np.random.default_rng(0)
    for v in [*rng.normal(size=(20, 5)) * 3, np.array([0.3, 0.3, 0.3, -1.0, 2.0]), np.full(5, 7.0)]:
        np.testing.assert_allclose(project_simplex(v.astype("float64")), reference_simplex_projection(v), atol=1e-12)
    v, mask = rng.normal(size=5), np.array([1, 0, 1, 1, 0])
    got = np.asarray(project_simplex(v, mask))
    assert (got[mask == 0] == 0).all()
    np.testing.assert_allclose(got[mask == 1], reference_simplex_projection(v[mask == 1]), atol=1e-6)
    assert (np.asarray(project_simplex(v, np.zeros(5))) == 0).all()


@pytest.mark.parametrize("seed", range(6))
def test_min_norm_of_two_gradients_has_the_closed_form(seed):
    rng = np.random.default_rng(seed)
    g1, g2 = rng.normal(size=4), rng.normal(size=4) * (5.0 if seed % 2 else 0.2)
    if seed == 4:
        g2 = 3.0 * g1  # collinear: the shorter one alone, α = 1
    alpha = np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0.0, 1.0)
    w = np.asarray(min_norm_weights(gram_of([g1, g2])))
    np.testing.assert_allclose(w, [alpha, 1 - alpha], atol=1e-5)


@pytest.mark.parametrize("g", [ORTHOGONAL, CONFLICTING, *RNG_SETS, np.random.default_rng(9).normal(size=(5, 7))])
def test_min_norm_point_matches_brute_force_over_the_supports(g):
    gram = gram_of(g)
    w = np.asarray(min_norm_weights(gram), np.float64)
    ref = brute_force_min_norm(g @ np.transpose(g))
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(w, ref, atol=1e-5)


def test_lower_bounded_qp_satisfies_its_optimality_conditions():
    # A convex QP's solution is characterised by: v ≥ u, λ = Gv ≥ 0, λ·(v − u) = 0.
    rng = np.random.default_rng(1)
    for _ in range(4):
        j = rng.normal(size=(3, 5)) * rng.uniform(0.1, 3.0, size=(3, 1))
        gram = gram_of(j).astype(np.float64)
        lower = np.abs(rng.normal(size=(3, 3))) * (rng.uniform(size=(3, 3)) < 0.6)
        v = np.asarray(lower_bounded_qp(gram, lower), np.float64)
        scale = np.trace(gram)
        assert (v >= lower - 1e-6).all()
        multipliers = v @ gram / scale
        assert (multipliers >= -1e-6).all()
        np.testing.assert_allclose(np.sum(multipliers * (v - lower), axis=1), 0.0, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("g", [ORTHOGONAL, CONFLICTING, RNG_SETS[0]])
def test_bargaining_weights_solve_their_equation(g, alpha):
    gram = gram_of(g).astype(np.float64)
    w = np.asarray(bargaining_weights(gram, alpha=alpha, ridge=0.0), np.float64)
    assert (w > 0).all()
    np.testing.assert_allclose(gram @ w, w ** (-1 / alpha), rtol=1e-5)
    # Scaling G by s scales w by s^(−α/(α+1)) exactly.
    scaled = np.asarray(bargaining_weights(100.0 * gram, alpha=alpha, ridge=0.0), np.float64)
    np.testing.assert_allclose(scaled, w * 100.0 ** (-alpha / (alpha + 1)), rtol=1e-5)


def test_cagrad_dual_is_the_minimum_over_a_fine_grid_for_two_tasks():
    g = np.array([[1.0, 0.2], [-0.9, 1.5]])
    gram = g @ g.T
    g0 = g.mean(axis=0)
    grid = np.linspace(0.0, 1.0, 20001)[:, None] * [1.0, -1.0] + [0.0, 1.0]
    points = grid @ g
    for c in [0.2, 0.4, 1.0]:
        objective = points @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(points, axis=1)
        np.testing.assert_allclose(cagrad_dual(gram, c=c), grid[np.argmin(objective)], atol=2e-4)


# ----- MGDA ---------------------------------------------------------------------------------------
def test_mgda_weights_are_the_min_norm_point_of_the_hull():
    c = rule("mgda", CONFLICTING)
    np.testing.assert_allclose(c, brute_force_min_norm(CONFLICTING @ CONFLICTING.T), atol=1e-5)
    # Orthogonal gradients: w_k ∝ 1/‖g_k‖², so that every g_k·d is the same.
    np.testing.assert_allclose(rule("mgda", ORTHOGONAL), [4.0, 1.0, 16.0] / np.float64(21.0), atol=1e-5)
    d = c @ CONFLICTING
    assert (CONFLICTING @ d >= d @ d - 1e-5).all()  # every task decreases at least by ‖d‖²


def test_mgda_normalizations_follow_the_papers_code():
    losses = np.array([2.0, 0.5, 1.0])
    norms = np.linalg.norm(ORTHOGONAL, axis=1)
    np.testing.assert_allclose(rule("mgda", ORTHOGONAL, normalization="l2"), np.full(3, 1 / 3), atol=1e-5)
    for name, scale in [("loss", losses), ("loss+", losses * norms)]:
        expected = brute_force_min_norm(ORTHOGONAL @ ORTHOGONAL.T / np.outer(scale, scale))
        np.testing.assert_allclose(rule("mgda", ORTHOGONAL, losses=losses, normalization=name), expected, atol=1e-5)
    with pytest.raises(MtlError, match="normalization"):
        mgda_weights(np.eye(2), np.ones(2), np.ones(2), "l1")


# ----- UPGrad -------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", [CONFLICTING, OPPOSITE, ONE_ZERO, *RNG_SETS])
def test_upgrad_aggregate_conflicts_with_no_task(g):
    c = rule("upgrad", g)
    d = c @ g
    # The ridge (1e-4 of the trace) allows g_k·d down to −1e-4·trace·c_k.
    assert (g @ d >= -1e-4 * np.trace(g @ g.T) * np.abs(c) - 1e-6).all(), g @ d


@pytest.mark.parametrize("g", [ORTHOGONAL, AGREEING, IDENTICAL])
def test_upgrad_is_the_mean_without_conflict(g):
    np.testing.assert_allclose(rule("upgrad", g), np.full(3, 1 / 3), atol=1e-6)


def test_upgrad_projects_a_conflicting_pair_like_the_vector_form():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    # g/2 projected onto {x: g1·x ≥ 0, g2·x ≥ 0}: each lands on the other's normal plane.
    p1 = g1 / 2 - (g1 / 2 @ g2) / (g2 @ g2) * g2
    p2 = g2 / 2 - (g2 / 2 @ g1) / (g1 @ g1) * g1
    c = np.asarray(upgrad_coefficients(gram_of([g1, g2]), [1.0, 1.0], reg_eps=0.0), np.float64)
    np.testing.assert_allclose(c @ np.stack([g1, g2]), p1 + p2, atol=1e-5)


# ----- CAGrad -------------------------------------------------------------------------------------
@pytest.mark.parametrize("g", [ORTHOGONAL, CONFLICTING, IDENTICAL, ONE_ZERO, *RNG_SETS])
def test_cagrad_with_c_zero_is_the_mean(g):
    np.testing.assert_allclose(rule("cagrad", g, c=0.0), np.full(3, 1 / 3), atol=1e-6)


@pytest.mark.parametrize("g", [CONFLICTING, RNG_SETS[1]])
def test_cagrad_update_maximises_the_worst_improvement_in_its_ball(g):
    c_radius = 0.4
    coefficients = rule("cagrad", g, c=c_radius, rescale=0)
    d = coefficients @ g
    g0 = g.mean(axis=0)
    radius = c_radius * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) == pytest.approx(radius, rel=1e-4)  # on the ball's boundary
    rng = np.random.default_rng(0)
    u = rng.normal(size=(20000, g.shape[1]))
    others = g0 + radius * u / np.linalg.norm(u, axis=1, keepdims=True) * rng.uniform(size=(20000, 1)) ** 0.1
    assert np.min(g @ d) >= np.max(np.min(others @ g.T, axis=1)) - 1e-5


def test_cagrad_rescale_divides_the_update():
    plain = rule("cagrad", CONFLICTING, rescale=0)
    np.testing.assert_allclose(rule("cagrad", CONFLICTING), plain / 1.16, rtol=1e-5)
    np.testing.assert_allclose(rule("cagrad", CONFLICTING, rescale=2), plain / 1.4, rtol=1e-5)
    with pytest.raises(MtlError, match="rescale"):
        cagrad_coefficients(np.eye(2), np.ones(2), rescale=3)
    with pytest.raises(MtlError, match="non-negative"):
        CAGrad(c=-0.1)


# ----- Nash-MTL and FairGrad ----------------------------------------------------------------------
@pytest.mark.parametrize("g", [ORTHOGONAL, CONFLICTING, AGREEING, *RNG_SETS])
def test_nash_mtl_weights_solve_the_bargaining_equation(g):
    alpha = rule("nash_mtl", g)
    gram = g @ g.T
    assert (alpha > 0).all()
    np.testing.assert_allclose(gram @ alpha, 1.0 / alpha, rtol=1e-4)


def test_nash_mtl_orthogonal_weights_are_inverse_norms_and_update_every_holds_them():
    np.testing.assert_allclose(rule("nash_mtl", ORTHOGONAL), [1.0, 0.5, 2.0], rtol=1e-5)
    b = NashMTL(tasks=["a", "b", "c"], update_every=3)
    grams = [gram_of(ORTHOGONAL * s) for s in (1.0, 2.0, 3.0, 4.0)]
    got = [np.asarray(b.rule(gm, np.ones(3, "float32"), np.ones(3, "float32"))) for gm in grams]
    np.testing.assert_allclose(got[1], got[0])
    np.testing.assert_allclose(got[2], got[0])
    np.testing.assert_allclose(got[3], np.array([1.0, 0.5, 2.0]) / 4.0, rtol=1e-5)  # step 3: solved again
    assert int(b.steps.value) == 4
    with pytest.raises(MtlError, match="update_every"):
        NashMTL(update_every=0)


@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
@pytest.mark.parametrize("g", [ORTHOGONAL, CONFLICTING, RNG_SETS[2]])
def test_fairgrad_weights_solve_their_equation(g, alpha):
    w = rule("fairgrad", g, alpha=alpha)
    np.testing.assert_allclose(g @ g.T @ w, w ** (-1 / alpha), rtol=1e-4)


def test_fairgrad_at_alpha_one_is_nash_mtl():
    np.testing.assert_allclose(rule("fairgrad", CONFLICTING), rule("nash_mtl", CONFLICTING), rtol=1e-6)
    with pytest.raises(MtlError, match="alpha"):
        FairGrad(alpha=0.0)


# ----- every rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", KEYS)
def test_absent_task_gets_zero_and_the_others_the_sub_problem(key):
    g = RNG_SETS[0]
    full = rule(key, g, present=[1.0, 0.0, 1.0])  # the absent task's row is not even zeroed
    sub = rule(key, g[[0, 2]])
    assert full[1] == 0.0
    np.testing.assert_allclose(full[[0, 2]], sub, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    "g", [IDENTICAL, ONE_ZERO, OPPOSITE, ALL_ZERO], ids=["identical", "one_zero", "opposite", "zero"]
)
def test_weights_are_finite_on_degenerate_sets(key, g):
    c = rule(key, g)
    assert np.isfinite(c).all(), c
    if key in ("nash_mtl", "fairgrad"):
        assert (c[np.linalg.norm(g, axis=1) == 0] == 0).all()  # a zero gradient has nothing to bargain with


def test_identical_gradients_give_equal_weights():
    for key in KEYS:
        c = rule(key, IDENTICAL)
        np.testing.assert_allclose(c, np.full(3, c.mean()), rtol=1e-3, err_msg=key)


def test_every_rule_runs_under_xla_like_eager():
    balancers = [get_balancer(k, tasks=["a", "b", "c"]) for k in KEYS]
    gram, present, losses = tf.constant(gram_of(CONFLICTING)), tf.constant([1.0, 0.0, 1.0]), tf.ones(3)

    @tf.function(jit_compile=True)
    def all_rules(gram, losses, present):
        return [b.rule(gram, losses, present) for b in balancers]

    compiled = all_rules(gram, losses, present)
    for b, got in zip(balancers, compiled):
        np.testing.assert_allclose(got, b.rule(gram, losses, present), rtol=1e-4, atol=1e-6, err_msg=b.key)


@pytest.mark.parametrize(
    "balancer",
    [
        MGDA(normalization="loss+", grad_level="parameters"),
        CAGrad(c=0.7, rescale=2),
        UPGrad(reg_eps=1e-3),
        NashMTL(update_every=5, grad_level="parameters"),
        FairGrad(alpha=2.0),
    ],
    ids=lambda b: b.key,
)
def test_options_survive_serialization(balancer):
    balancer.setup(["a", "b"])
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(balancer))
    assert type(again) is type(balancer) and again.key in KEYS
    assert again.get_config() == balancer.get_config()
    assert again.task_names == ["a", "b"]
    assert get_balancer(keras.saving.serialize_keras_object(balancer)).get_config() == balancer.get_config()
