"""The random order in which a projection method (PCGrad, GradVac) visits the other tasks, per step.

The papers draw a fresh random order for every task at every step. Drawing it from a stateless
generator seeded by ``(seed, step)`` makes it the same on every replica (they must all apply the
same surgery to the same Gramian) and the same again when a run resumes from a saved step counter.
"""

from __future__ import annotations

import tensorflow as tf


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
    pair = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(step_number, tf.int64)])
    noise = tf.random.stateless_uniform((num_tasks, num_tasks), seed=pair)
    return tf.argsort(noise, axis=-1, stable=True, direction="ASCENDING")
