"""Dense depth regression: one depth per pixel at input resolution over the shared FPN.

The label is an ``H×W`` (or ``H×W×1``) map of depths, in metres or any unit the data uses. A pixel
without a measurement — 0, negative, NaN, infinite, or beyond ``max_depth`` (the evaluation cap of
the depth literature: 10 m on NYUv2, 80 m on KITTI) — gets a per-pixel sample weight of 0, so it
neither trains nor counts in a metric; its target is written as 0.

The head predicts log-depth and its output layer takes the exponential, so the output is positive
and the Grad-CAM score reads log-depth (a nearness that does not depend on the unit).

Losses (``loss_type``):

- ``scale_invariant`` (Eigen, Puhrsch & Fergus 2014): with ``d = log ŷ - log y`` over an image's
  ``n`` valid pixels, ``(1/n) Σ d² - (λ/n²) (Σ d)²``. λ = 0 is the plain log-space MSE, λ = 1 is
  blind to a global scale (only relative depth trains), and the paper's λ = 0.5 sits between.
  Over a batch, each image weighs as many valid pixels as it has (a pixel-weighted mean).
- ``l1``: the mean absolute error over the valid pixels.

Metrics, as the depth literature reports them, over every valid pixel of the evaluated images:
``abs_rel`` (mean ``|ŷ - y| / y``, the primary one), ``rmse`` and ``delta1`` (the share of pixels
with ``max(ŷ / y, y / ŷ) < 1.25``).

Example:
    >>> t = DepthTask("depth")
    >>> target, weight = t.encode(np.array([[2.0, 0.0], [np.nan, 12.0]], "float32"), 2)
    >>> target.numpy().tolist(), weight.numpy().tolist()
    ([[2.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]])
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from demo import heads
from demo.decoding import OUTPUT_STRIDE
from mtl_keras.errors import MtlError, unknown
from mtl_keras.layers import fpn_features
from mtl_keras.tasks.base import Task, TaskExample, register_task_type
from mtl_keras.tasks.scoring import LABEL, PREDICTED, TaskScore

DEPTH_LOSSES = ("scale_invariant", "l1")
DELTA_THRESHOLD = 1.25
# Predictions are clipped into [_MIN_DEPTH, _MAX_PREDICTION] before a log or a ratio: an untrained
# head's exp() can reach 0 or inf, and one such pixel would make the whole batch's loss NaN.
_MIN_DEPTH = 1e-3
_MAX_PREDICTION = 1e6


def valid_depth(depth, max_depth: float | None = None):
    """Where a depth map holds a measurement: finite, above 0 and at most ``max_depth``.

    Args:
        depth: a depth tensor or array, any shape.
        max_depth: the largest valid depth, or ``None`` for no cap.

    Returns:
        A boolean tensor of the same shape.

    Example:
        >>> valid_depth(np.array([1.0, 0.0, -1.0, np.nan, np.inf, 11.0]), 10.0).numpy().tolist()
        [True, False, False, False, False, False]
    """
    depth = ops.convert_to_tensor(depth, "float32")
    ok = ops.logical_and(ops.isfinite(depth), depth > 0)
    if max_depth is not None:
        ok = ops.logical_and(ok, depth <= max_depth)
    return ok


def _as_target_shape(y_true, y_pred):
    """``y_pred`` ``[B, H, W, 1]`` reshaped like ``y_true`` ``[B, H, W]`` (a target may carry the channel too)."""
    return ops.reshape(y_pred, ops.shape(y_true))


def _pixel_weights(y_true, sample_weight, max_depth):
    """The valid-pixel mask times the sample weight, broadcast from per image to per pixel if needed."""
    mask = ops.cast(valid_depth(y_true, max_depth), "float32")
    if sample_weight is None:
        return mask
    w = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
    while len(w.shape) < len(mask.shape):
        w = ops.expand_dims(w, -1)
    return mask * w


@keras.saving.register_keras_serializable(package="mtl_keras")
class DepthLoss(keras.losses.Loss):
    """The scale-invariant log loss (Eigen et al. 2014) or L1, over the valid pixels of each image.

    Invalid target pixels (``valid_depth``) get weight 0 whatever the sample weights say; with the
    default reduction the result is the sample-weighted mean of per-pixel terms, which for one image
    with every weight 1 is exactly the closed form of the module docstring.

    Args:
        loss_type: ``scale_invariant`` or ``l1``.
        si_lambda: λ of the scale-invariant loss, in [0, 1].
        max_depth: targets above it are invalid; ``None`` for no cap.
        reduction: a Keras loss reduction (default ``mean_with_sample_weight``).
        name: the loss name.
        dtype: the loss dtype.

    Example:
        >>> y = np.array([[[1.0, 2.0], [4.0, 0.0]]], "float32")        # one invalid pixel
        >>> loss = DepthLoss(si_lambda=1.0)
        >>> round(float(loss(y, y[..., None] * 3.0)), 6)                 # a global scale costs nothing
        0.0
    """

    def __init__(self, loss_type="scale_invariant", si_lambda=0.5, max_depth=None,
                 reduction="mean_with_sample_weight", name="depth_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if loss_type not in DEPTH_LOSSES:
            raise unknown("depth loss", str(loss_type), DEPTH_LOSSES)
        self.loss_type = loss_type
        self.si_lambda = float(si_lambda)
        self.max_depth = None if max_depth is None else float(max_depth)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # The mask must reach the reduction too: without it the divisor would count invalid pixels.
        y_true = ops.convert_to_tensor(y_true, "float32")
        return super().__call__(y_true, y_pred, _pixel_weights(y_true, sample_weight, self.max_depth))

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = _as_target_shape(y_true, ops.cast(y_pred, "float32"))
        valid = valid_depth(y_true, self.max_depth)
        mask = ops.cast(valid, "float32")
        truth = ops.where(valid, y_true, 1.0)
        pred = ops.clip(y_pred, _MIN_DEPTH, _MAX_PREDICTION)
        if self.loss_type == "l1":
            return ops.abs(pred - truth) * mask
        d = (ops.log(pred) - ops.log(truth)) * mask
        axes = tuple(range(1, len(d.shape)))
        # Each image's mean log error over its own valid pixels:
        # sum_p (d_p² - λ·d_p·mean) = n·(mean d² - λ·mean²), Eigen's loss times the pixel count.
        mean = ops.divide_no_nan(ops.sum(d, axis=axes, keepdims=True), ops.sum(mask, axis=axes, keepdims=True))
        return (ops.square(d) - self.si_lambda * d * mean) * mask

    def get_config(self):
        return {**super().get_config(), "loss_type": self.loss_type, "si_lambda": self.si_lambda,
                "max_depth": self.max_depth}


class _PixelMean(keras.metrics.Metric):
    """A mean of a per-pixel depth error over the valid, weighted pixels of every image seen."""

    def __init__(self, name, max_depth=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def per_pixel(self, truth, pred):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true, "float32")
        y_pred = _as_target_shape(y_true, ops.cast(ops.convert_to_tensor(y_pred), "float32"))
        w = _pixel_weights(y_true, sample_weight, self.max_depth)
        truth = ops.where(w > 0, y_true, 1.0)
        errors = self.per_pixel(truth, ops.clip(y_pred, _MIN_DEPTH, _MAX_PREDICTION))
        self.total.assign_add(ops.sum(ops.where(w > 0, errors * w, 0.0)))
        self.count.assign_add(ops.sum(w))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self):
        return {"name": self.name, "max_depth": self.max_depth, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="mtl_keras")
class AbsRel(_PixelMean):
    """Mean absolute relative error ``|ŷ - y| / y`` over the valid pixels (lower is better).

    Example:
        >>> m = AbsRel()
        >>> _ = m.update_state(np.array([[2.0, 4.0, 0.0]]), np.array([[3.0, 4.0, 9.0]]))
        >>> float(m.result())
        0.25
    """

    def __init__(self, name="abs_rel", max_depth=None, dtype=None):
        super().__init__(name=name, max_depth=max_depth, dtype=dtype)

    def per_pixel(self, truth, pred):
        return ops.abs(pred - truth) / truth


@keras.saving.register_keras_serializable(package="mtl_keras")
class DepthRMSE(_PixelMean):
    """Root mean squared error over the valid pixels of every image seen (lower is better).

    Example:
        >>> m = DepthRMSE()
        >>> _ = m.update_state(np.array([[2.0, 4.0, 0.0]]), np.array([[5.0, 3.0, 9.0]]))
        >>> round(float(m.result()), 4)  # sqrt((9 + 1) / 2)
        2.2361
    """

    def __init__(self, name="rmse", max_depth=None, dtype=None):
        super().__init__(name=name, max_depth=max_depth, dtype=dtype)

    def per_pixel(self, truth, pred):
        return ops.square(pred - truth)

    def result(self):
        return ops.sqrt(super().result())


@keras.saving.register_keras_serializable(package="mtl_keras")
class DeltaAccuracy(_PixelMean):
    """Share of valid pixels with ``max(ŷ / y, y / ŷ) < 1.25`` (δ₁, higher is better).

    Example:
        >>> m = DeltaAccuracy()
        >>> _ = m.update_state(np.array([[2.0, 4.0, 0.0]]), np.array([[2.4, 6.0, 9.0]]))
        >>> float(m.result())
        0.5
    """

    def __init__(self, name="delta1", max_depth=None, dtype=None):
        super().__init__(name=name, max_depth=max_depth, dtype=dtype)

    def per_pixel(self, truth, pred):
        return ops.cast(ops.maximum(pred / truth, truth / pred) < DELTA_THRESHOLD, "float32")


@register_task_type
class DepthTask(Task):
    """Per-pixel depth at input resolution; the output ``[H, W, 1]`` is positive (an exponential).

    Args:
        name: the task name.
        loss_type: ``scale_invariant`` (default) or ``l1``.
        si_lambda: λ of the scale-invariant loss, in [0, 1] (default 0.5).
        max_depth: the largest valid depth of a label (default 10, NYUv2's); ``None`` for no cap.
        units: the unit of the depths, for people (the model card, the demo's caption).
        head_channels: the width of the head's 3×3 convolution.
        **kwargs: ``Task``'s (``depends_on``, ...).

    Raises:
        MtlError: an unknown loss type, λ outside [0, 1] or a ``max_depth`` that is not a positive number.

    Example:
        >>> t = DepthTask("depth")
        >>> out = np.full((4, 4, 1), 2.0, "float32"); out[0, 0] = 1.0
        >>> {k: v for k, v in t.decode(out).items() if k != "depth"}
        {'nearest': 1.0, 'farthest': 2.0, 'median': 2.0, 'centre': 2.0}
    """

    kind = "depth"
    primary_metric = "abs_rel"
    higher_is_better = False
    dense = True
    # abs rel is relative, so an absolute drop compares across datasets: +0.02 (e.g. 0.12 -> 0.14).
    export_tolerance = 0.02
    likelihood_factor = 0.5  # Gaussian likelihood of the log-depth error
    # The score reads log-depth, the input of the exponential.
    gradcam_reads_logits = True

    def __init__(self, name, loss_type: str = "scale_invariant", si_lambda: float = 0.5,
                 max_depth: float | None = 10.0, units: str = "m", head_channels: int = 64, **kwargs):
        super().__init__(name, **kwargs)
        if loss_type not in DEPTH_LOSSES:
            raise unknown(f"loss type of depth task {name!r}:", str(loss_type), DEPTH_LOSSES)
        try:
            si_lambda = float(si_lambda)
        except (TypeError, ValueError):
            raise MtlError(f"task {name!r}: si_lambda must be a number in [0, 1], got {si_lambda!r}") from None
        if not 0.0 <= si_lambda <= 1.0:
            # Above 1 the loss rewards spreading the log errors and is unbounded below.
            raise MtlError(f"task {name!r}: si_lambda must be in [0, 1], got {si_lambda}")
        if max_depth is not None:
            try:
                max_depth = float(max_depth)
            except (TypeError, ValueError):
                max_depth = float("nan")
            if not (math.isfinite(max_depth) and max_depth > 0):
                raise MtlError(f"task {name!r}: max_depth must be a positive number or None, got {max_depth}")
        self.loss_type = loss_type
        self.si_lambda = si_lambda
        self.max_depth = max_depth
        self.units = str(units)
        self.head_channels = int(head_channels)

    @property
    def num_outputs(self):
        return 1

    # ----- model side -------------------------------------------------------------------------
    def head(self, features, extra=None):
        if extra:
            raise MtlError(f"task {self.name!r}: a depth head cannot depend on other tasks")
        p = fpn_features(features)
        n = self.name
        # Start near a typical depth of the data instead of exp(0) = 1 unit.
        start = math.log(self.max_depth / 3) if self.max_depth else 0.0
        x = keras.layers.Conv2D(self.head_channels, 3, padding="same", activation="relu", name=f"{n}_conv")(p)
        x = keras.layers.Conv2D(1, 1, bias_initializer=keras.initializers.Constant(start), name=f"{n}_logits")(x)
        x = keras.layers.UpSampling2D(OUTPUT_STRIDE, interpolation="bilinear", name=f"{n}_upsample")(x)
        return self.output_layer()(x)

    def output_layer(self):
        return keras.layers.Activation("exponential", dtype="float32", name=self.name)

    def loss(self):
        return DepthLoss(self.loss_type, self.si_lambda, self.max_depth)

    def metrics(self):
        return [AbsRel(max_depth=self.max_depth), DepthRMSE(max_depth=self.max_depth),
                DeltaAccuracy(max_depth=self.max_depth)]

    # ----- data side --------------------------------------------------------------------------
    def encode(self, label, image_size):
        depth = tf.reshape(tf.cast(label, tf.float32), [image_size, image_size])
        valid = valid_depth(depth, self.max_depth)
        return tf.where(valid, depth, 0.0), tf.cast(valid, tf.float32)

    def target_signature(self, image_size):
        return tf.TensorSpec([image_size, image_size], tf.float32)

    # ----- person side ------------------------------------------------------------------------
    def decode(self, output):
        found = heads.depth(output, self.max_depth)
        return {**found, "depth": found["depth"].tolist()}

    def card_decoding(self):
        """The depth cap the device clips predictions to, and the unit it shows.

        Returns:
            ``{"max_depth": cap or None, "units": unit}``.

        Example:
            >>> DepthTask("depth").card_decoding()
            {'max_depth': 10.0, 'units': 'm'}
        """
        return {"max_depth": self.max_depth, "units": self.units}

    def gradcam_score(self, raw, labels, target):
        """How near the centre of the image is: minus the mean log-depth over its middle half.

        The same region for every target, so ``predicted`` and ``label`` (accepted for the CLI's
        defaults) score alike.

        Args:
            raw: the head's log-depth for the batch, numpy ``[B, H, W, 1]``.
            labels: unused.
            target: ``"predicted"`` or ``"label"``.

        Returns:
            A ``TaskScore`` whose targets are ``"centre"``.

        Raises:
            MtlError: any other target.

        Example:
            >>> raw = np.zeros((1, 4, 4, 1), "float32"); raw[0, 1:3, 1:3] = np.log(0.5)
            >>> s = DepthTask("depth").gradcam_score(raw, None, "predicted")
            >>> s.targets, [round(float(v), 4) for v in s(raw)]
            (['centre'], [0.6931])
        """
        if target not in (PREDICTED, LABEL):
            raise MtlError(f"target of depth task {self.name!r} must be {PREDICTED!r} or {LABEL!r} "
                           f"(both explain the nearness of the image centre), got {target!r}")
        h, w = raw.shape[1:3]
        centre = np.zeros((h, w), np.float32)
        centre[h // 4: h - h // 4, w // 4: w - w // 4] = 1.0
        weights = tf.constant(centre / centre.sum())

        def nearness(out):
            return -tf.reduce_sum(tf.reshape(out, tf.shape(out)[:3]) * weights, axis=(1, 2))

        return TaskScore(nearness, ["centre"] * len(raw), "nearness of the image centre (minus its mean log depth)")

    @classmethod
    def example(cls, image_size=16):
        """A slanted floor with a nearer square, one unmeasured and one NaN pixel, and an output close to it.

        Args:
            image_size: the side of the map and of the output.

        Returns:
            A ``TaskExample``.

        Example:
            >>> ex = DepthTask.example(8)
            >>> ex.task.decode(ex.output)["nearest"]
            2.0
        """
        n = int(image_size)
        rows = np.linspace(9.0, 4.0, n, dtype=np.float32)[:, None]
        depth = np.repeat(rows, n, axis=1)
        depth[n // 4: n // 2, n // 4: n // 2] = 2.0
        depth[0, 0], depth[-1, -1] = 0.0, np.nan
        output = np.nan_to_num(depth, nan=4.0)
        output[0, 0] = 9.0
        return TaskExample(cls("depth"), depth, (output * 1.05 - 0.1)[..., None].astype(np.float32))

    def get_config(self):
        return {
            **super().get_config(), "loss_type": self.loss_type, "si_lambda": self.si_lambda,
            "max_depth": self.max_depth, "units": self.units, "head_channels": self.head_channels,
        }
