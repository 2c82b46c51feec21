"""A user's picture files inside ``tf.data``, read by the demo's own reader (``demo.pictures``).

Training, evaluation, export calibration and explain read a user's files through the same numpy /
Pillow function as the device runner, so a picture the runner accepts is one training accepts, with
identical pixels (EXIF orientation, grayscale / palette / CMYK / 16-bit to 8-bit RGB, alpha on white,
the first frame of an animation, a reduced-scale decode of a large JPEG). A file that cannot be used
stops the pipeline through an in-graph assert whose message carries the file and its reason, which
``mtl_keras.errors.from_tf_error`` turns into one line (no Python traceback in TensorFlow's log).

Example:
    >>> import tempfile, os
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "g.png"); Image.new("L", (40, 30), 5).save(p)
    >>> tuple(read_picture_tensor(tf.constant(p), "g.png", image_size=32).shape)
    (30, 40, 3)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from demo.pictures import ImageError, read_picture
from mtl_keras.errors import IMAGE_END, IMAGE_MARKER


def read_pixels(path, name: str, image_size: int | None) -> tuple[np.ndarray, bytes]:
    """``(uint8 HxWx3, b"")`` for a usable picture, ``(1x1x3 zeros, b"NAME: reason")`` otherwise.

    Args:
        path: the picture's path (``str`` or ``bytes``, as ``tf.numpy_function`` passes it).
        name: the name to put in the problem message (``str`` or ``bytes``).
        image_size: the model input side the picture will be resized to, or ``None`` (full-size decode).

    Returns:
        ``(pixels, problem)``: uint8 ``[H, W, 3]`` RGB and ``b""``, or 1x1x3 zeros and ``b"NAME: reason"``.

    Example:
        >>> read_pixels(b"/no/such.png", "such.png", 32)[1]
        b'such.png: file not found'
    """
    path, name = _text(path), _text(name)
    try:
        pixels, _ = read_picture(path, size=image_size)
    except ImageError as e:
        return np.zeros((1, 1, 3), np.uint8), f"{name}: {e}".encode("utf-8")
    return pixels, b""


def read_picture_tensor(path, name, image_size: int | None = None) -> tf.Tensor:
    """The picture at ``path`` (a string tensor) as a uint8 ``[H, W, 3]`` tensor; fails naming ``name``.

    Args:
        path: a scalar string tensor, the picture's path.
        name: a scalar string (tensor), the name the error message gives.
        image_size: the model input side (allows a reduced-scale decode), or ``None``.

    Returns:
        A uint8 ``[H, W, 3]`` tensor; an unusable file makes the pipeline fail with an in-graph assert.

    Example:
        >>> read_picture_tensor(tf.constant("/no/such.png"), "such.png")
        Traceback (most recent call last):
        ...
        tensorflow.python.framework.errors_impl.InvalidArgumentError: ...
    """
    size = int(image_size) if image_size else None
    pixels, problem = tf.numpy_function(lambda p, n: read_pixels(p, n, size), [path, name],
                                        [tf.uint8, tf.string], stateful=False)
    check = tf.debugging.Assert(tf.equal(problem, ""), [tf.strings.join([IMAGE_MARKER, problem, IMAGE_END])])
    with tf.control_dependencies([check]):
        pixels = tf.identity(pixels)
    return tf.ensure_shape(pixels, [None, None, 3])


def _text(value) -> str:
    # numpy_function hands strings over as bytes inside tf.data, as 0-d object arrays when eager.
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
