"""``pcgrad``: gradient surgery (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020)."""

from __future__ import annotations

import functools

import tensorflow as tf
from keras import ops

from mtl_keras.balancing.base import Balancer, register_balancer


def pcgrad_coefficients(gram, orders):
    """PCGrad in the span of the task gradients: the c with Σ_i g_i^PC = Σ_k c_k g_k.

    ``gram[k, l] = g_k·g_l``; ``orders[i]`` is the (random) order in which task i visits the others
    (a permutation of all tasks; i itself is skipped). Each projected g_i^PC = Σ_k a_ik g_k stays a
    combination of the original gradients, so the surgery needs only the K×K Gram matrix, never a
    copy of the gradients.

    Args:
        gram: the ``[K, K]`` Gram matrix of the task gradients (array or tensor).
        orders: a ``[K, K]`` integer array; row i is a permutation of ``range(K)``.

    Returns:
        A ``[K]`` float32 tensor c with Σ_i g_i^PC = Σ_k c_k g_k.

    Example:
        >>> import numpy as np
        >>> g = np.array([[1.0, 0.0], [-1.0, 1.0]])  # conflicting: g1·g2 = -1
        >>> c = pcgrad_coefficients(g @ g.T, [[0, 1], [1, 0]])
        >>> [round(float(v), 4) for v in np.asarray(c) @ g]  # g1 → (.5, .5), g2 → (0, 1)
        [0.5, 1.5]
    """
    gram = ops.convert_to_tensor(gram, "float32")
    orders = ops.convert_to_tensor(orders, "int32")
    k = gram.shape[0]
    eye = ops.eye(k, dtype="float32")
    total = ops.zeros((k,), "float32")
    for i in range(k):
        a = eye[i]
        for p in range(k):
            j = orders[i, p]
            dot = ops.sum(a * ops.take(gram, j, axis=1))
            norm2 = ops.take(ops.diagonal(gram), j)
            conflict = ops.cast((dot < 0) & (j != i), "float32")
            a = a - conflict * ops.divide_no_nan(dot, norm2) * ops.one_hot(j, k, dtype="float32")
        total = total + a
    return total


@register_balancer
class PCGrad(Balancer):
    """Project each task's gradient off the others' where they conflict, on the shared parameters.

    Per step: one gradient per task; on every variable two or more tasks reach (the shared
    trunk), g_i is projected onto the normal plane of each g_j with g_i·g_j < 0, visiting the
    other tasks in a random order, and the projected gradients are summed. Variables only one task
    reaches get that task's gradient unchanged. Under a distribution strategy the per-task
    gradients of the shared variables are summed over replicas first, so the surgery sees the
    global batch and gives the same update as on one device.

    Example:
        >>> b = PCGrad(tasks=["shape", "box"])
        >>> b.current_weights()
        {'shape': 1.0, 'box': 1.0}
    """

    key = "pcgrad"
    needs_task_gradients = True

    def __init__(self, seed: int = 0, **kwargs):
        self.seed = int(seed)
        super().__init__(**kwargs)

    def task_orders(self, step_number):
        """Each task's random order of visiting the others, the same on every replica (seeded by the step).

        Args:
            step_number: the optimizer's step counter (an integer or integer tensor), mixed into the seed.

        Returns:
            An int32 ``[K, K]`` tensor; row i is a permutation of ``range(K)``.

        Example:
            >>> b = PCGrad(tasks=["a", "b", "c"], seed=1)
            >>> sorted(b.task_orders(0).numpy()[0].tolist())
            [0, 1, 2]
        """
        num = len(self.task_names)
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step_number, tf.int64)])
        noise = tf.random.stateless_uniform((num, num), seed=seed)
        return tf.argsort(noise, axis=-1, stable=True)

    def gradients(self, step, losses, present):
        num = len(self.task_names)
        per_task = [step.gradient(step.task_losses[k]) for k in range(num)]
        variables = step.variables
        shared = [i for i in range(len(variables)) if sum(g[i] is not None for g in per_task) >= 2]
        stacked = {}
        for i in shared:
            stacked[i] = ops.stack(
                [ops.zeros_like(variables[i].value) if g[i] is None else g[i] for g in per_task]
            )
        if step.num_replicas > 1 and shared:
            reduced = step.all_reduce([stacked[i] for i in shared])
            stacked = dict(zip(shared, reduced))
        gram = ops.zeros((num, num), "float32")
        for i in shared:
            flat = ops.reshape(ops.cast(stacked[i], "float32"), (num, -1))
            gram = gram + ops.matmul(flat, ops.transpose(flat))
        coefficients = pcgrad_coefficients(gram, self.task_orders(step.model.optimizer.iterations))
        grads = []
        for i, v in enumerate(variables):
            if i in stacked:
                c = ops.cast(coefficients, stacked[i].dtype)
                g = ops.tensordot(c, stacked[i], axes=1)
                # Every replica now holds the same global gradient; the optimizer sums them again.
                grads.append(g / step.num_replicas if step.num_replicas > 1 else g)
            else:
                found = [g[i] for g in per_task if g[i] is not None]
                grads.append(functools.reduce(ops.add, found) if len(found) > 1 else (found[0] if found else None))
        if step.has_regularization:
            for i, g in enumerate(step.gradient(step.regularization)):
                if g is not None:
                    grads[i] = g if grads[i] is None else grads[i] + g
        return grads

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
