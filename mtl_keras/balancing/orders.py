"""The random order in which a projection method (PCGrad, GradVac) visits the other tasks, per step.

The papers draw a fresh random order for every task at every step. Here the order is a function of
``(seed, step)`` alone, so it is the same on every replica (they must all apply the same surgery to
the same Gramian) and again when a run resumes from its saved step counter. It is drawn with an
integer hash rather than ``tf.random.stateless_uniform``, whose numbers differ between an
XLA-compiled step and an eager or plain-graph one: the integer arithmetic is exact everywhere, so
``task_orders(step)`` read eagerly is the order a compiled training step used.
"""

from __future__ import annotations

import tensorflow as tf

_MASK = 0xFFFFFFFF


def _mix(x):
    # Multiply–xorshift rounds of a 32-bit integer hash, in int64 so the products cannot overflow.
    for _ in range(2):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
        x = tf.bitwise.bitwise_and(x * 0x45D9F3B, _MASK)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def seeded_orders(num_tasks: int, seed: int, step_number):
    """Each task's random order of visiting the tasks, a function of ``(seed, step_number)`` only.

    Args:
        num_tasks: K, the number of tasks.
        seed: the balancer's seed option (an integer).
        step_number: the balancer's step counter (an integer or integer tensor), mixed into the seed.

    Returns:
        An int32 ``[K, K]`` tensor; row i is a permutation of ``range(K)`` (i itself included, the
        methods skip it).

    Example:
        >>> first = seeded_orders(3, seed=0, step_number=4).numpy()
        >>> sorted(first[1].tolist()), bool((first == seeded_orders(3, 0, 4).numpy()).all())
        ([0, 1, 2], True)
    """
    step = tf.cast(step_number, tf.int64)
    state = _mix(tf.constant(int(seed) & _MASK, tf.int64))
    state = _mix(tf.bitwise.bitwise_xor(state, tf.bitwise.bitwise_and(step, _MASK)))
    state = _mix(tf.bitwise.bitwise_xor(state, tf.bitwise.bitwise_and(tf.bitwise.right_shift(step, 32), _MASK)))
    cells = tf.range(num_tasks * num_tasks, dtype=tf.int64)
    keys = _mix(tf.bitwise.bitwise_and(state + cells * 0x9E3779B9, _MASK))
    return tf.argsort(tf.reshape(keys, (num_tasks, num_tasks)), axis=-1, stable=True)
