"""The one exception type users see: a clear, one-line message naming the problem."""


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

    Example:
        >>> str(unknown("trunk", "vgg", ["resnet50"]))
        "unknown trunk 'vgg'; available: resnet50"
    """
    return MtlError(f"unknown {kind} {name!r}; available: {', '.join(sorted(available))}")
