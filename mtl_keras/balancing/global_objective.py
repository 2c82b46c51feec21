"""A loss-level objective that is not linear in the losses, on one replica or several.

Each replica of a distributed step sees only its share of every global-batch loss (the shares sum
to the global masked mean) and the replicas' gradients are summed. A weighted sum Σ λ_k·L_k splits
over the shares as it is, but F(L) = (Π L_k)^{1/K} or FAMO's Σ z_k log L_k does not: F of a
share is not a share of F. What the optimizer needs is ∇F(L_global) = Σ_k ∂F/∂L_k·∇L_k, and that
is linear in the ∇L_k once the slopes ∂F/∂L_k are taken at the global losses, so each replica
differentiates Σ_k s_k·share_k with the same slopes s_k and the sum over replicas is exact.
"""

from __future__ import annotations

from keras import ops

from mtl_keras.balancing.step import all_reduce


def global_objective(fn, losses, replica_scale=1.0):
    """This replica's objective for F(global losses): value F·replica_scale, gradient Σ_k ∂F/∂L_k·∇share_k.

    The global losses are the all-reduced shares (held constant); F and its slopes are evaluated on
    them, identically on every replica. The returned tensor's value sums to F over the replicas and
    its gradient with respect to this replica's ``losses`` is the slope vector, so the replicas'
    gradients sum to the gradient of F at the global batch. On one replica it is F itself, with
    F's own gradient.

    Args:
        fn: a function from a ``[K]`` float32 tensor of global losses to ``(value, slopes)``: the
            scalar F and its ``[K]`` gradient ∂F/∂L (the caller knows it in closed form).
        losses: a ``[K]`` float32 tensor, this replica's share of each task's global-batch loss.
        replica_scale: ``1 / num_replicas``, so that the values summed over replicas count F once.

    Returns:
        A scalar float32 tensor to differentiate.

    Example:
        >>> import tensorflow as tf
        >>> f = lambda l: (ops.sum(l * l), 2.0 * l)  # F = Σ L², ∂F/∂L = 2L
        >>> shares = tf.constant([1.0, 2.0])
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(shares)
        ...     value = global_objective(f, shares)
        >>> float(value), [float(g) for g in tape.gradient(value, shares)]
        (5.0, [2.0, 4.0])
    """
    shares = ops.cast(losses, "float32")
    global_losses = ops.stop_gradient(all_reduce(shares))
    value, slopes = fn(global_losses)
    value, slopes = ops.stop_gradient(value), ops.stop_gradient(slopes)
    # Zero in value, slopes in gradient: the linear term carries the gradient, value the level.
    return value * replica_scale + ops.sum(slopes * (shares - ops.stop_gradient(shares)))
