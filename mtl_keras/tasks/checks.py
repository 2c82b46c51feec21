"""In-graph label checks: a bad label stops the input pipeline with a message naming task and value.

A label outside its task's range would otherwise train silently wrong (a class index past the last
class) or poison every weight (a NaN regression target). The check runs inside ``tf.data``, so the
failure surfaces as a TensorFlow error; ``mtl_keras.errors.from_tf_error`` turns it back into the
one-line ``MtlError`` the CLI prints.

Example:
    >>> import tensorflow as tf
    >>> with tf.control_dependencies([assert_label(tf.constant(True), "count", tf.constant(1.0), "finite")]):
    ...     pass
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.errors import LABEL_END, LABEL_MARKER


def assert_label(ok, task: str, value, allowed: str):
    """An assert op: when ``ok`` is false, fail with "task 'x': label VALUE is not ALLOWED".

    Args:
        ok: a boolean scalar tensor, the check.
        task: the task name, for the message.
        value: the label tensor to show (at most 8 values).
        allowed: what the label should be, in words (``"a class index in 0..5"``).

    Returns:
        The ``tf.debugging.Assert`` op; run it through ``tf.control_dependencies``.

    Example:
        >>> import tensorflow as tf
        >>> assert_label(tf.constant(False), "shape", tf.constant(9), "a class index in 0..5")
        Traceback (most recent call last):
        ...
        tensorflow.python.framework.errors_impl.InvalidArgumentError: ...
    """
    def literal(s):
        return str(s).replace("{", "{{").replace("}", "}}")

    text = tf.strings.format(
        literal(f"{LABEL_MARKER}task {task!r}: label ") + "{}" + literal(f" is not {allowed}{LABEL_END}"),
        [value], summarize=8,
    )
    return tf.debugging.Assert(ok, [text])
