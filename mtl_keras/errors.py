"""The one exception type users see: a clear, one-line message naming the problem."""

import re

# Brackets around a label check's message inside a TensorFlow error (see mtl_keras.tasks.checks).
LABEL_MARKER = "mtl_keras bad label: "
LABEL_END = " :end"
# Brackets around "FILE: reason" of a picture the shared reader refused (see mtl_keras.data.pictures).
IMAGE_MARKER = "mtl_keras bad image: "
IMAGE_END = " :end"
# First lines of TensorFlow's image decoders when a file is not an image or is cut short.
_DECODE_ERRORS = ("Unknown image file format", "Invalid PNG data", "Invalid JPEG data", "Invalid GIF data",
                  "Invalid BMP data", "Corrupt JPEG data", "Premature end of JPEG", "not a valid image",
                  "Input is empty", "DecodeImage", "DecodePng", "DecodeJpeg")


class MtlError(ValueError):
    """A user-facing error: bad input, an unknown name, a file of the wrong kind.

    The CLI prints ``error: <message>`` and exits with status 2 instead of a traceback.

    Example:
        >>> raise MtlError("unknown task 'colour'; available: shape, color")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: unknown task 'colour'; available: shape, color
    """


def unknown(kind: str, name: str, available) -> MtlError:
    """An ``MtlError`` for an unknown name, listing what is available.

    Args:
        kind: what was looked up (``"trunk"``, ``"task"``, ...), as the message names it.
        name: the name that was not found.
        available: the valid names (any iterable of strings; listed sorted).

    Returns:
        The ``MtlError`` (to ``raise``), message ``unknown KIND 'NAME'; available: A, B``.

    Example:
        >>> str(unknown("trunk", "vgg", ["resnet50"]))
        "unknown trunk 'vgg'; available: resnet50"
    """
    return MtlError(f"unknown {kind} {name!r}; available: {', '.join(sorted(available))}")


def from_tf_error(error: BaseException, find_bad_images=None) -> MtlError | None:
    """The ``MtlError`` behind a TensorFlow runtime error from the input pipeline, or None.

    A failed label check (``mtl_keras.tasks.checks``) gives its own message; an image the decoder
    rejects gives the decoder's reason, and the file names when ``find_bad_images()`` can tell them.
    Anything else returns None, so real bugs keep their traceback.

    Args:
        error: the exception raised while iterating a ``tf.data`` pipeline.
        find_bad_images: a callable returning the unreadable file names, or ``None``.

    Returns:
        An ``MtlError`` with a one-line message, or None when ``error`` is not a label or image problem.

    Example:
        >>> class InvalidArgumentError(Exception): pass
        >>> str(from_tf_error(InvalidArgumentError("assertion failed: [mtl_keras bad label: task 'x': label 7 is not 0..5 :end]")))
        "task 'x': label 7 is not 0..5"
    """
    text = str(error)
    found = re.search(re.escape(LABEL_MARKER) + "(.*?)" + re.escape(LABEL_END), text, re.S)
    if found:
        return MtlError(_unquote(found.group(1)))
    found = re.search(re.escape(IMAGE_MARKER) + "(.*?)" + re.escape(IMAGE_END), text, re.S)
    if found:
        bad = (find_bad_images() if find_bad_images else []) or [_unquote(found.group(1))]
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        return MtlError(f"{len(bad)} image file(s) of the data could not be read: {shown}; "
                        "replace or remove them")
    if type(error).__name__ not in ("InvalidArgumentError", "DataLossError", "UnknownError"):
        return None
    starts = [text.find(k) for k in _DECODE_ERRORS[:-3] if k in text]
    if not starts and not any(k in text for k in _DECODE_ERRORS):
        return None
    reason = re.split(r"\n| \[\[| \[Op:", text[min(starts):])[0].strip() if starts else "the decoder failed"
    bad = find_bad_images() if find_bad_images else []
    where = f" ({len(bad)} unreadable: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})" if bad else ""
    return MtlError(f"an image file of the data could not be decoded{where}: {reason[:200]}; "
                    "replace or remove corrupt, truncated or non-image files")


def _unquote(message: str) -> str:
    # TensorFlow quotes and escapes an assert's string when it prints it.
    message = message.replace("\\'", "'").replace('\\"', '"').replace("\\\\", "\\")
    return " ".join(message.split())
