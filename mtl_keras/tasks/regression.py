"""Scalar (or vector) regression: linear output, Huber loss, mean absolute error."""

import keras
import numpy as np
import tensorflow as tf

from mtl_keras.tasks.base import Task, register_task_type
from mtl_keras.tasks.checks import assert_label


@register_task_type
class RegressionTask(Task):
    """A real-valued target of ``units`` numbers (e.g. the object count).

    Huber (quadratic below ``delta``, linear above) keeps one outlier from dominating the batch.

    Example:
        >>> RegressionTask("count").decode(np.array([2.6]))
        {'value': 2.6}
    """

    kind = "regression"
    primary_metric = "mae"
    higher_is_better = False

    def __init__(self, name, units: int = 1, delta: float = 1.0, **kwargs):
        super().__init__(name, **kwargs)
        self.units = int(units)
        self.delta = float(delta)

    @property
    def num_outputs(self):
        return self.units

    def output_layer(self):
        return keras.layers.Activation("linear", dtype="float32", name=self.name)

    def loss(self):
        return keras.losses.Huber(delta=self.delta, reduction="mean_with_sample_weight")

    def metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]

    def encode(self, label, image_size):
        value = tf.cast(tf.reshape(label, [self.units]), tf.float32)
        # NaN/inf would make every weight NaN after one step; name the label instead.
        check = assert_label(tf.reduce_all(tf.math.is_finite(value)), self.name, value, "a finite number")
        with tf.control_dependencies([check]):
            return tf.identity(value), tf.constant(1.0)

    def target_signature(self, image_size):
        return tf.TensorSpec([self.units], tf.float32)

    def decode(self, output):
        v = np.asarray(output, np.float32).reshape(-1)
        return {"value": round(float(v[0]), 4)} if v.size == 1 else {"value": [round(float(x), 4) for x in v]}

    def get_config(self):
        return {**super().get_config(), "units": self.units, "delta": self.delta}
