"""Scalar (or vector) regression: linear output, Huber loss, mean absolute error."""

import keras
import numpy as np
import tensorflow as tf

from demo import heads
from mtl_keras.errors import MtlError
from mtl_keras.tasks.base import Task, TaskExample, register_task_type
from mtl_keras.tasks.checks import assert_label
from mtl_keras.tasks.scoring import LABEL, PREDICTED, TaskScore


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
    # export_tolerance stays None: an absolute MAE drop means nothing without the target's scale.
    likelihood_factor = 0.5  # Gaussian likelihood

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
        return heads.regression(output)

    def gradcam_score(self, raw, labels, target):
        """The predicted value of one unit: unit 0 for ``predicted`` and ``label``, else the unit index.

        Args:
            raw: the head's output for the batch, numpy ``[B, units]``.
            labels: unused (the score is the prediction whatever the label).
            target: ``"predicted"``, ``"label"`` or a unit index.

        Returns:
            A ``TaskScore``.

        Example:
            >>> RegressionTask("size", units=2).gradcam_score(np.zeros((1, 2)), None, "1").what
            'value of unit 1'
        """
        unit = 0 if target in (PREDICTED, LABEL) else target
        try:
            unit = int(unit)
        except (TypeError, ValueError):
            raise MtlError(f"target of regression task {self.name!r} must be a unit index, got {target!r}") from None
        if not 0 <= unit < raw.shape[-1]:
            raise MtlError(f"task {self.name!r}: unit {unit} out of range 0..{raw.shape[-1] - 1}")
        return TaskScore(lambda out: out[:, unit], [f"value[{unit}]"] * len(raw), f"value of unit {unit}")

    @classmethod
    def example(cls, image_size=16):
        """An object count of 3 and an output of 2.6.

        Args:
            image_size: unused (a value has no size).

        Returns:
            A ``TaskExample``.

        Example:
            >>> ex = RegressionTask.example()
            >>> ex.task.decode(ex.output)
            {'value': 2.6}
        """
        return TaskExample(cls("count"), np.array([3.0], np.float32), np.array([2.6], np.float32))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "delta": self.delta}
