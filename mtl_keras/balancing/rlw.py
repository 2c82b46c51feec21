"""``rlw``: Random Loss Weighting (Lin, Ye, Xu, Shi & Zhang, TMLR 2022)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mtl_keras.balancing.base import Balancer, register_balancer


def standard_normal(seed, step, num: int):
    """``num`` standard normal draws that are a function of ``[seed, step]`` alone, on any device, with or without XLA.

    Box–Muller on the raw Philox bits of ``tf.random.stateless_uniform(dtype=uint32)``:
    z = √(−2 ln u₁)·cos(2π u₂), with u = (top 24 bits + ½)·2⁻²⁴ in (0, 1). The raw bits are the
    same under XLA and without it; TensorFlow's own ``stateless_normal`` is not (XLA converts the
    bits to floats its own way), and a run may be traced either way.

    Args:
        seed: the run's integer seed (a Python int or an int32 scalar tensor).
        step: the step counter (a Python int or an int32 scalar tensor).
        num: how many draws (K).

    Returns:
        A ``[num]`` float32 tensor.

    Example:
        >>> a, b = standard_normal(7, 0, 3), standard_normal(7, 1, 3)
        >>> bool(ops.all(a == standard_normal(7, 0, 3))), bool(ops.any(a != b))
        (True, True)
    """
    seeds = ops.cast(ops.stack([ops.convert_to_tensor(seed), ops.convert_to_tensor(step)]), "int32")
    bits = tf.random.stateless_uniform([2, num], seed=seeds, minval=None, maxval=None, dtype=tf.uint32, alg="philox")
    u = (ops.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), "float32") + 0.5) * 2.0**-24
    return ops.sqrt(-2.0 * ops.log(u[0])) * ops.cos(2.0 * np.pi * u[1])


def random_weights(seed, step, present):
    """RLW's weights of one step: softmax over the present tasks of K standard normal draws.

    The draws are ``standard_normal(seed, step, K)``: a function of the two integers only, so
    every replica (and a resumed run) draws the same ones.

    Args:
        seed: the run's integer seed (a Python int or an int32 scalar tensor).
        step: the step counter (a Python int or an int32 scalar tensor).
        present: a ``[K]`` float32 tensor, 1.0 where the task has a label in the batch.

    Returns:
        A ``[K]`` float32 tensor that sums to 1 over the present tasks (all 0 if none is present).

    Example:
        >>> w = random_weights(7, 0, ops.array([1.0, 0.0, 1.0]))
        >>> float(w[1]), round(float(ops.sum(w)), 6)
        (0.0, 1.0)
    """
    present = ops.cast(present, "float32")
    draws = standard_normal(seed, step, present.shape[0])
    # The max over present tasks only, so an absent task's large draw cannot underflow the others.
    shifted = draws - ops.max(ops.where(present > 0, draws, -np.inf))
    e = present * ops.exp(ops.where(present > 0, shifted, 0.0))
    return ops.divide_no_nan(e, ops.sum(e))


@register_balancer
class RLW(Balancer):
    """Random weights each step: L = Σ_k λ_k·L_k with λ = softmax(λ̃), λ̃ ~ N(0, I).

    Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
    Learning", TMLR 2022 (the softmax-of-normal variant the paper recommends). λ̃ is drawn anew at
    every training step; the softmax runs over the tasks with a label in the global batch, so an
    absent task gets weight 0 and the present ones still sum to 1. The draws are stateless, from
    ``[seed, step]`` with a step counter the model saves: identical on every replica, and a resumed
    run continues the sequence. ``seed`` defaults to one drawn from NumPy's global generator when
    the balancer is made (``keras.utils.set_random_seed`` and ``--seed`` fix it), and the config
    keeps the number drawn. ``task_weights`` reports the last step's λ.

    Example:
        >>> b = RLW(seed=3, tasks=["a", "b"])
        >>> total = b.combine(ops.array([1.0, 1.0]), ops.array([1.0, 1.0]))  # Σ λ = 1
        >>> round(float(total), 6), round(sum(b.current_weights().values()), 5)
        (1.0, 1.0)
    """

    key = "rlw"

    def __init__(self, seed: int | None = None, **kwargs):
        self.seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
        super().__init__(**kwargs)

    def build_variables(self, num_tasks):
        # [seed, steps drawn so far]: the stateless seed of the next draw. The seed is a variable too
        # because a multi-worker strategy broadcasts initial values from worker 0: workers whose
        # NumPy generators differ still draw alike.
        self.rng_state = self.add_weight(
            name="rng_state", shape=(2,), dtype="int32", initializer=keras.initializers.Constant([self.seed, 0]),
            trainable=False, aggregation="only_first_replica",
        )
        self.last_weights = self._state("last_weights", (num_tasks,), keras.initializers.Constant(1.0 / num_tasks))

    def task_weights(self):
        return ops.cast(self.last_weights, "float32")

    def combine(self, losses, present, replica_scale=1.0):
        state = ops.convert_to_tensor(self.rng_state)
        weights = random_weights(state[0], state[1], present)
        self.last_weights.assign(weights)
        self.rng_state.assign(state + ops.array([0, 1], "int32"))
        # The weights do not depend on the losses, so a replica's share weighs like the global loss.
        return ops.sum(ops.stop_gradient(weights) * losses)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
