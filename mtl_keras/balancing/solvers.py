"""In-graph solvers on the K×K task Gramian: the simplex projection, MGDA's min-norm point, the QPs of
UPGrad and CAGrad, and the bargaining equation of Nash-MTL and FairGrad.

Every solver is TensorFlow ops with a fixed iteration count (no numpy callback, no data-dependent
loop), so it runs under ``tf.function``, XLA (``jit_compile=True``) and distribution strategies; fed
the same Gramian, every replica computes the same weights. The problems are K×K, so they are solved
in float64: the cost is nil and the near-singular Gramians of nearly collinear gradients stay
solvable. Each solver first divides the Gramian by its trace (the minimisers are scale-free or scale
back exactly), and restricts itself to the present tasks: an absent task's weight is 0.

The QPs are solved by a primal-dual interior-point method (Nocedal & Wright, *Numerical
Optimization*, ch. 16.6 and 19): 30 Newton steps on the perturbed KKT system whatever the
conditioning, the barrier keeping the Newton matrix positive definite when the Gramian is singular
(identical, collinear or zero gradients), where an active-set method would need a pseudo-inverse;
then one exact solve on the support found (``_polish``) makes the result exact to rounding where the
support is settled. The K×K linear systems are solved by Gauss-Jordan elimination unrolled over the
K pivots: a few elementwise ops per pivot, which XLA compiles in a fraction of the time of its
Cholesky or LU expansions and which never raises (TensorFlow's CPU ``solve`` does on a singular
matrix, its ``cholesky`` logs a warning on an indefinite one).
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.errors import MtlError

# Each interior-point step aims at this fraction of the current duality gap (a long-step method).
_CENTRING = 0.1
# The duality gap is not driven below this: x_i ≈ gap/z_i is then far below the accuracy wanted,
# and the barrier still pins the flat directions of a singular Gramian (identical gradients: uniform).
_GAP_FLOOR = 1e-10
# Added to the Newton matrix, relative to its curvature part: far above float64 rounding, so that no
# pivot of the elimination is zero where the barrier vanishes on a singular Gramian, and far below
# any curvature that matters to the solution.
_CURVATURE_FLOOR = 1e-11
# The ridge of the polishing solve (relative to a unit trace): it picks the most central point of a
# flat face (identical gradients) without amplifying rounding, and moves well-posed solutions by
# about 1e-9 / (their smallest curvature).
_POLISH_RIDGE = 1e-9
# How far below 0 a polished x_i or multiplier may be and still count as feasible.
_POLISH_TOLERANCE = 1e-9
# CAGrad's barrier weight μ halves each step from the first value to the last (F is O(1)).
_BARRIER_START = 1.0
_BARRIER_END = 1e-12
# Steps stop this fraction short of the boundary so that x and z stay strictly positive.
_TO_BOUNDARY = 0.99
# A task whose squared gradient norm is below this fraction of the trace has no gradient to weigh.
_ZERO_GRADIENT = 1e-12


def _inputs(gram, present):
    """The Gramian as float64 and the 0/1 mask of present tasks (all ones for ``None``)."""
    gram = tf.cast(tf.convert_to_tensor(gram), tf.float64)
    if present is None:
        return gram, tf.ones((int(gram.shape[-1]),), tf.float64)
    return gram, tf.cast(tf.convert_to_tensor(present) > 0, tf.float64)


def _normalized(g, mask):
    """(G / trace(G), trace): G symmetrised and restricted to the present tasks; trace 1 when G = 0."""
    g = 0.5 * (g + tf.transpose(g)) * mask[:, None] * mask[None, :]
    trace = tf.reduce_sum(tf.linalg.diag_part(g))
    trace = tf.where(trace > 0, trace, tf.ones_like(trace))
    return g / trace, trace


def _solve(matrix, rhs):
    """matrix⁻¹·rhs for ``[B, K, K]`` and ``[B, K, R]``, by Gauss-Jordan elimination unrolled over K.

    Without pivoting: the matrices here are positive definite (or within rounding of it). A zero
    pivot gives inf/NaN, which the callers discard.
    """
    k = int(matrix.shape[-1])
    augmented = tf.concat([matrix, rhs], axis=-1)
    for i in range(k):
        row = augmented[..., i, :] / augmented[..., i, i:i + 1]
        # Subtracting (a_ii − 1)·row from row i leaves row itself there; a_ji·row clears column i elsewhere.
        column = augmented[..., :, i] - tf.one_hot(i, k, dtype=matrix.dtype)
        augmented = augmented - column[..., :, None] * row[..., None, :]
    return augmented[..., k:]


def _newton_kkt(matrix, rhs, e, residual):
    """(Δx, Δν) with matrix·Δx − e·Δν = rhs and eᵀΔx = residual (``e`` None: no equality, Δν = 0).

    Δν is eliminated: Δx = a + Δν·b with a = M⁻¹rhs, b = M⁻¹e, so one elimination serves both.
    """
    if e is None:
        return _solve(matrix, rhs[..., None])[..., 0], None
    both = _solve(matrix, tf.stack([rhs, e], axis=-1))
    a, b = both[..., 0], both[..., 1]
    dnu = (residual - tf.reduce_sum(a, axis=-1, keepdims=True)) / tf.reduce_sum(b, axis=-1, keepdims=True)
    return a + dnu * b, dnu


def project_simplex(v, mask=None):
    """Euclidean projection of ``v`` onto the probability simplex, over the entries where ``mask`` is 1.

    The projection is max(v − θ, 0) with θ the root of Σ max(v_i − θ, 0) = 1; θ equals the largest
    (Σ_{i∈S} v_i − 1)/|S| over the sets S of the top-c entries (each such value is a lower bound on θ,
    attained by the true support), computed from pairwise comparisons instead of a sort. Entries off
    the mask get 0; with no entry on the mask the result is all zeros.

    Args:
        v: a ``[..., K]`` float tensor (batched over leading axes).
        mask: ``[..., K]`` (or ``[K]``), nonzero where the entry takes part; ``None`` is all entries.

    Returns:
        A tensor like ``v`` (same dtype): non-negative, summing to 1 over the mask.

    Example:
        >>> [round(float(x), 4) for x in project_simplex([0.5, 0.2, -1.0])]
        [0.65, 0.35, 0.0]
        >>> [round(float(x), 4) for x in project_simplex([0.5, 0.2, -1.0], mask=[0, 1, 1])]
        [0.0, 1.0, 0.0]
    """
    v = tf.convert_to_tensor(v)
    if not v.dtype.is_floating:
        v = tf.cast(v, tf.float32)
    m = tf.ones_like(v) if mask is None else tf.cast(tf.convert_to_tensor(mask) > 0, v.dtype) + tf.zeros_like(v)
    # on_top[..., j, i]: entry i is on the mask and at least as large as entry j.
    on_top = tf.cast(v[..., None, :] >= v[..., :, None], v.dtype) * m[..., None, :]
    count = tf.reduce_sum(on_top, axis=-1)
    total = tf.reduce_sum(on_top * v[..., None, :], axis=-1)
    candidates = (total - 1.0) / tf.maximum(count, 1.0)
    lowest = tf.reduce_min(candidates, axis=-1, keepdims=True)
    theta = tf.reduce_max(tf.where(m > 0, candidates, lowest), axis=-1, keepdims=True)
    return tf.maximum(v - theta, 0.0) * m


def _step_to_boundary(x, dx):
    """The longest step t ≤ 1 with x + t·dx ≥ 0 (x > 0), cut short of the boundary; ``[B, 1]``."""
    ratio = tf.where(dx < 0, x / tf.maximum(-dx, 1e-300), 2.0 + tf.zeros_like(x))
    return tf.minimum(_TO_BOUNDARY * tf.reduce_min(ratio, axis=-1, keepdims=True), 1.0)


def _interior_point(grad_hess, x0, mask, simplex: bool, iterations: int):
    """Primal-dual path following for min f(x) s.t. x ≥ 0 on the mask, x = 0 off it (and Σx = 1).

    Batched over the leading axis: ``x0`` and ``mask`` are ``[B, K]`` float64 and ``grad_hess(x)``
    returns ∇f ``[B, K]`` and ∇²f ``[B, K, K]`` (positive semidefinite, zero rows and columns off
    the mask). Each step solves (∇²f + Z/X) Δx − e Δν = −∇f + ν e + σμ/x with eᵀΔx = 1 − eᵀx
    (``_newton_kkt``). Off the mask x = z = 0 and the matrix row is the identity, so Δx = Δz = 0.
    A step that is not finite (a zero pivot, a Gramian with NaN) is not taken.
    """
    off = 1.0 - mask
    count = tf.maximum(tf.reduce_sum(mask, axis=-1, keepdims=True), 1.0)

    def step(x, z, nu):
        grad, hess = grad_hess(x)
        safe_x = x + off
        gap = tf.maximum(tf.reduce_sum(x * z, axis=-1, keepdims=True) / count, _GAP_FLOOR)
        barrier = z / safe_x
        centre = _CENTRING * gap / safe_x * mask
        floor = _CURVATURE_FLOOR * (tf.reduce_sum(tf.linalg.diag_part(hess), axis=-1, keepdims=True) / count + 1e-3)
        matrix = hess + tf.linalg.diag(barrier + off + floor)
        residual = 1.0 - tf.reduce_sum(x, axis=-1, keepdims=True)
        dx, dnu = _newton_kkt(matrix, (nu - grad) * mask + centre, mask if simplex else None, residual)
        dz = centre - z - barrier * dx
        t = _step_to_boundary(tf.concat([x, z], axis=-1), tf.concat([dx, dz], axis=-1))
        new = (x + t * dx, z + t * dz, nu if dnu is None else nu + t * dnu)
        ok = tf.reduce_all(tf.math.is_finite(tf.concat(new, axis=-1)), axis=-1, keepdims=True)
        return tuple(tf.where(ok, n, o) for n, o in zip(new, (x, z, nu)))

    state = (x0 * mask, mask + 0.0, tf.zeros_like(count))
    return tf.while_loop(lambda i, *_: i < iterations, lambda i, *s: (i + 1, *step(*s)), (0, *state))[1:3]


def _polish(matrix, linear, x, z, mask, simplex: bool):
    """The QP's exact solution on the support the interior point found, where that solution is optimal.

    Where a constraint is degenerate (x_i = 0 with a zero multiplier: orthogonal gradients) the
    interior point only reaches x_i ≈ sqrt(gap); here every x_i > z_i is taken as free, the others
    as 0, and ½xᵀAx + qᵀx is minimised on that face (one linear solve). The result replaces x when
    it is primal and dual feasible, i.e. optimal; otherwise (a support not yet settled) x is kept.
    """
    free = mask * tf.cast(x > z, tf.float64)
    fixed = mask - free
    hess = matrix * free[:, :, None] * free[:, None, :] + tf.linalg.diag(1.0 - free + _POLISH_RIDGE * free)
    face, nu = _newton_kkt(hess, -linear * free, free if simplex else None, 1.0)
    nu = tf.zeros_like(face[:, :1]) if nu is None else nu
    multipliers = (tf.linalg.matvec(matrix, face) + linear - nu) * fixed
    # NaN (a zero pivot) fails both comparisons, so it is never taken.
    optimal = tf.reduce_all((face >= -_POLISH_TOLERANCE) & (multipliers >= -_POLISH_TOLERANCE), axis=-1, keepdims=True)
    return tf.where(optimal, tf.maximum(face, 0.0), x)


def _quadratic(matrix, linear):
    """∇ and ∇² of ½xᵀAx + qᵀx, batched: A ``[B, K, K]`` or ``[K, K]``, q ``[B, K]``."""
    def grad_hess(x):
        hess = matrix + tf.zeros_like(x)[:, :, None]
        return tf.linalg.matvec(hess, x) + linear, hess
    return grad_hess


def min_norm_weights(gram, present=None, iterations: int = 30):
    """MGDA's weights: the w on the simplex minimising ‖Σ w_k g_k‖² = wᵀGw (Sener & Koltun 2018, eq. 3).

    The point Σ w_k g_k is the min-norm point of the convex hull of the present tasks' gradients. It
    is unique, w is not when the gradients are affinely dependent (identical gradients: any w); the
    interior-point path then ends at the most central minimiser (uniform for identical gradients).

    Args:
        gram: the ``[K, K]`` Gramian G[k, l] = g_k·g_l (any scale).
        present: ``[K]``, nonzero for the tasks on the simplex; ``None`` is all tasks.
        iterations: interior-point steps before the polish (20 settle the support on ill-conditioned
            test sets, 30 leave a margin).

    Returns:
        A ``[K]`` float32 tensor: non-negative, summing to 1 over the present tasks, 0 elsewhere
        (all 0 when no task is present).

    Example:
        >>> g = [[1.0, 0.0], [0.0, 4.0]]  # orthogonal, ‖g2‖ = 2‖g1‖: w ∝ (1/1, 1/4)
        >>> [round(float(w), 4) for w in min_norm_weights(g)]
        [0.8, 0.2]
    """
    return _min_norm(*_inputs(gram, present), int(iterations))


@tf.function(autograph=False)
def _min_norm(gram, mask, iterations):
    k = int(gram.shape[-1])
    g, _ = _normalized(gram, mask)
    x0 = mask / tf.maximum(tf.reduce_sum(mask), 1.0)
    linear = tf.zeros((1, k), tf.float64)
    x, z = _interior_point(_quadratic(g, linear), x0[None], mask[None], True, iterations)
    w = _polish(g, linear, x, z, mask[None], True)[0]
    return tf.cast(w, tf.float32)


def lower_bounded_qp(gram, lower, present=None, iterations: int = 30):
    """The v minimising ½vᵀGv subject to v ≥ ``lower`` (over the present tasks), one per row of ``lower``.

    With G = JJᵀ, Jᵀv is the projection of Jᵀu onto the dual cone {d : Jd ≥ 0} of the task gradients
    when ``lower`` = u (Quinton & Rey 2024, Proposition 1): UPGrad's projection of each g_i.

    Args:
        gram: the ``[K, K]`` Gramian (positive semidefinite; add a ridge for a unique v).
        lower: ``[K]`` or ``[B, K]`` lower bounds u (one problem per row).
        present: ``[K]``, nonzero for the tasks that take part; an absent task's v is 0.
        iterations: interior-point steps before the polish.

    Returns:
        A float32 tensor shaped like ``lower``: the minimisers v ≥ u (0 for absent tasks).

    Example:
        >>> g = [[1.0, -0.5], [-0.5, 1.0]]  # g1·g2 < 0: g1 projected off g2 gains some of g2
        >>> [round(float(x), 4) for x in lower_bounded_qp(g, [1.0, 0.0])]
        [1.0, 0.5]
    """
    lower = tf.cast(tf.convert_to_tensor(lower), tf.float64)
    single = len(lower.shape) == 1
    v = _lower_bounded(*_inputs(gram, present), lower[None] if single else lower, int(iterations))
    return v[0] if single else v


@tf.function(autograph=False)
def _lower_bounded(gram, mask, lower, iterations):
    g, _ = _normalized(gram, mask)
    lower = lower * mask
    # v = u + x with x ≥ 0: ½xᵀGx + (Gu)ᵀx, the QP on the non-negative orthant.
    x0 = tf.ones_like(lower) * mask
    rows = tf.broadcast_to(mask, tf.shape(lower))
    linear = tf.linalg.matvec(g, lower)
    x, z = _interior_point(_quadratic(g, linear), x0, rows, False, iterations)
    x = _polish(g, linear, x, z, rows, False)
    return tf.cast((lower + x) * mask, tf.float32)


def cagrad_dual(gram, present=None, c: float = 0.4, iterations: int = 40, smoothing: float = 1e-10,
                halvings: int = 30):
    """CAGrad's dual (Liu et al. 2021, eq. 3): the w on the simplex minimising g_wᵀg_0 + c‖g_0‖·‖g_w‖.

    g_w = Σ w_k g_k, g_0 the mean of the present tasks' gradients; in Gramian terms
    F(w) = wᵀG1/m + c·sqrt(1ᵀG1)/m·sqrt(wᵀGw). F is convex but not quadratic, so instead of the
    primal-dual method (whose full Newton steps can cycle on it) this is a log-barrier method: one
    Newton step on F(w) − μ Σ log w_k per μ, with a backtracking (Armijo) line search on that
    function, μ halving from 1 to 1e-12 (F is O(1) on the trace-normalised Gramian), so the end point
    is within K·1e-12 of the minimum. ‖g_w‖ is smoothed to sqrt(‖g_w‖² + ε) (ε = ``smoothing`` ×
    trace) so that Newton steps stay defined where g_w = 0.

    Args:
        gram: the ``[K, K]`` Gramian (any scale: F scales with it, the minimiser does not).
        present: ``[K]``, nonzero for the tasks on the simplex; ``None`` is all tasks.
        c: the radius of CAGrad's ball around g_0, relative to ‖g_0‖ (c ≥ 0).
        iterations: Newton steps, one per barrier weight μ.
        smoothing: ε relative to the trace of G.
        halvings: trial step sizes per line search, each half the previous.

    Returns:
        A ``[K]`` float32 tensor on the simplex of the present tasks (0 elsewhere).

    Example:
        >>> g = [[1.0, 0.0], [0.0, 4.0]]  # the shorter gradient has the smaller g_0·g_k: it is favoured
        >>> [round(float(w), 3) for w in cagrad_dual(g, c=0.4)]
        [1.0, 0.0]
    """
    # c as a tensor: one trace serves every radius.
    c = tf.constant(float(c), tf.float64)
    return _cagrad_dual(*_inputs(gram, present), c, int(iterations), float(smoothing), int(halvings))


@tf.function(autograph=False)
def _cagrad_dual(gram, mask, c, iterations, smoothing, halvings):
    g, _ = _normalized(gram, mask)
    off = 1.0 - mask
    m = tf.maximum(tf.reduce_sum(mask), 1.0)
    toward_mean = tf.linalg.matvec(g, mask) / m
    radius = c * tf.sqrt(tf.maximum(tf.reduce_sum(mask * toward_mean) / m, 0.0))
    trials = 0.5 ** tf.range(halvings, dtype=tf.float64)

    def barrier_objective(w, mu):  # batched over leading axes
        norm2 = tf.maximum(tf.reduce_sum(tf.linalg.matvec(g, w) * w, axis=-1), 0.0)
        logs = tf.reduce_sum(tf.math.log(w + off) * mask, axis=-1)
        return tf.reduce_sum(w * toward_mean, axis=-1) + radius * tf.sqrt(norm2 + smoothing) - mu * logs

    def step(i, w):
        mu = tf.maximum(_BARRIER_START * 0.5 ** tf.cast(i, tf.float64), _BARRIER_END)
        gw = tf.linalg.matvec(g, w)
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(w * gw), 0.0) + smoothing)
        grad = (toward_mean + radius * gw / norm - mu / (w + off)) * mask
        curvature = radius * (g / norm - gw[:, None] * gw[None, :] / norm**3)
        hess = curvature + tf.linalg.diag(mu / (w + off) ** 2 * mask + off)
        dw = _newton_kkt(hess[None], -grad[None], mask[None], 0.0)[0][0]
        t = _step_to_boundary(w[None], dw[None])[0] * trials
        candidates = w[None, :] + t[:, None] * dw[None, :]
        good = barrier_objective(candidates, mu) <= barrier_objective(w, mu) + 1e-4 * t * tf.reduce_sum(grad * dw)
        new = w + tf.reduce_max(tf.where(good, t, tf.zeros_like(t))) * dw
        return tf.where(tf.reduce_all(tf.math.is_finite(new)), new, w)

    w = tf.while_loop(lambda i, _: i < iterations, lambda i, w: (i + 1, step(i, w)), (0, mask / m))[1]
    return tf.cast(w, tf.float32)


def bargaining_weights(gram, present=None, alpha: float = 1.0, ridge: float = 1e-8, iterations: int = 25,
                       halvings: int = 30):
    """The w > 0 solving G w = w^(−1/α) over the present tasks (Nash-MTL at α = 1: G w = 1/w).

    It is the stationary point of the strictly convex f(w) = ½wᵀGw − Σ h(w_k) with h'(w) = w^(−1/α)
    (h = log w at α = 1), found by Newton steps with a backtracking (Armijo) line search whose first
    trial stops short of w = 0, so every iterate stays positive (the ``halvings`` trial steps are
    evaluated at once, not in a loop). ``ridge`` × trace(G) is added to
    the diagonal: without it the equation has no solution when a non-negative combination of the
    gradients vanishes (g and −g). A task with a zero gradient has nothing to bargain with (the
    equation has no solution for it): it gets weight 0, like an absent task. The solve runs on
    G/trace(G) and is scaled back exactly: w(G) = w(G/s)·s^(−α/(α+1)).

    Args:
        gram: the ``[K, K]`` Gramian.
        present: ``[K]``, nonzero for the tasks that take part; ``None`` is all tasks.
        alpha: the fairness exponent α > 0 (1: proportional fairness, Nash-MTL).
        ridge: the diagonal regulariser, relative to the trace of G.
        iterations: Newton steps (converged to float32 precision after ~15 from the diagonal-Gramian
            starting point on ill-conditioned Gramians; 25 leave a margin).
        halvings: trial step sizes per line search, each half the previous.

    Returns:
        A ``[K]`` float32 tensor: positive for the present tasks with a nonzero gradient, 0 elsewhere.

    Raises:
        MtlError: a non-positive ``alpha``.

    Example:
        >>> g = [[4.0, 0.0], [0.0, 1.0]]  # orthogonal: w_k = 1/‖g_k‖
        >>> [round(float(w), 4) for w in bargaining_weights(g, ridge=0.0)]
        [0.5, 1.0]
    """
    if alpha <= 0:
        raise MtlError(f"alpha must be positive, got {alpha}")
    # α and the ridge as tensors: one trace serves every value.
    alpha, ridge = tf.constant(float(alpha), tf.float64), tf.constant(float(ridge), tf.float64)
    return _bargaining(*_inputs(gram, present), alpha, ridge, int(iterations), int(halvings))


@tf.function(autograph=False)
def _bargaining(gram, mask, alpha, ridge, iterations, halvings):
    g, trace = _normalized(gram, mask)
    active = mask * tf.cast(tf.linalg.diag_part(g) > _ZERO_GRADIENT, tf.float64)
    off = 1.0 - active
    g = g * active[:, None] * active[None, :] + tf.linalg.diag(ridge * active)
    power = 1.0 / alpha
    trials = 0.5 ** tf.range(halvings, dtype=tf.float64)
    exponent = 1.0 - power
    at_one = tf.equal(exponent, 0.0)

    def objective(w):  # ½wᵀGw − Σ h(w_k) over the active tasks, batched over leading axes
        safe = w + off
        # (w^e − 1)/e, which tends to log w as e → 0 (α = 1); a constant apart from w^e/e.
        power_form = (safe ** exponent - 1.0) / tf.where(at_one, tf.ones_like(exponent), exponent)
        h = tf.where(at_one, tf.math.log(safe), power_form)
        return tf.reduce_sum(0.5 * tf.linalg.matvec(g, w) * w - h * active, axis=-1)

    def step(w):
        safe = w + off
        grad = (tf.linalg.matvec(g, w) - safe ** (-power)) * active
        hess = g + tf.linalg.diag(active * power * safe ** (-power - 1.0) + off)
        dw = -_solve(hess[None], grad[None, :, None])[0, :, 0]
        t = _step_to_boundary(w, dw) * trials
        good = objective(w[None, :] + t[:, None] * dw[None, :]) <= objective(w) + 1e-4 * t * tf.reduce_sum(grad * dw)
        # The largest trial step with sufficient decrease; none (at the solution already): stay.
        new = w + tf.reduce_max(tf.where(good, t, tf.zeros_like(t))) * dw
        return tf.where(tf.reduce_all(tf.math.is_finite(new)), new, w)

    w0 = (tf.linalg.diag_part(g) + off) ** (-alpha / (alpha + 1.0)) * active
    w = tf.while_loop(lambda i, _: i < iterations, lambda i, w: (i + 1, step(w)), (0, w0))[1]
    return tf.cast(w * trace ** (-alpha / (alpha + 1.0)), tf.float32)
