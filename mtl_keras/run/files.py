"""Atomic artifact writing: a file is either the old one or the complete new one, never half-written.

Example:
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "t.txt"); write_text(p, "ok"); open(p).read()
    'ok'
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from demo import files

from mtl_keras.errors import MtlError


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write.
        suffix: the temporary file's suffix (``.keras`` for Keras, which checks it).

    Returns:
        A context manager yielding the temporary path; nothing replaces ``path`` if the block raises.

    Example:
        >>> import os, tempfile
        >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with atomic_path(target) as tmp:
        ...     _ = open(tmp, "w").write("done")
        >>> open(target).read()
        'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    ensure_dir(folder)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix or ".tmp", dir=folder)
    os.close(fd)
    # mkstemp makes the file owner-only; artifacts should get the usual permissions.
    os.chmod(tmp, files.default_file_mode())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (numpy values become Python ones, NaN becomes null).

    The writing itself is ``demo.files``' (TensorFlow-free, shared with export and the demo).

    Args:
        path: the JSON file to (re)write.
        obj: dicts, lists, numbers, strings, numpy values.

    Example:
        >>> import os, tempfile, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "m.json")
        >>> write_json(p, {"a": np.float32(1.5)}); open(p).read()
        '{\\n  "a": 1.5\\n}\\n'
    """
    ensure_dir(os.path.dirname(os.path.abspath(os.fspath(path))))  # a clear error when a parent is a file
    files.write_json(path, _python(obj))


def write_text(path, text: str) -> None:
    """Write text atomically.

    Args:
        path: the file to (re)write.
        text: its whole content.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "r.md"); write_text(p, "# ok"); open(p).read()
        '# ok'
    """
    ensure_dir(os.path.dirname(os.path.abspath(os.fspath(path))))
    files.write_text(path, text)


def save_model(model, path) -> None:
    """``model.save(path)`` through a temporary ``.keras`` file and a rename.

    Args:
        model: a Keras model.
        path: the ``.keras`` file to (re)write; the old one stays until the new one is complete.

    Example:
        >>> save_model(model, "runs/x/model.keras")  # doctest: +SKIP
    """
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def ensure_dir(path) -> str:
    """Create ``path`` (and parents) or say clearly why it cannot be a directory.

    Args:
        path: a folder to create if needed.

    Returns:
        ``path``.

    Raises:
        MtlError: ``path`` is a file, cannot be created, or is not writable.

    Example:
        >>> import tempfile; ensure_dir(tempfile.mkdtemp()) != ""
        True
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise MtlError(f"output path {path} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise MtlError(f"cannot create directory {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise MtlError(f"directory {path} is not writable")
    return path


def _python(obj):
    """Plain Python values for JSON: numpy scalars and arrays converted, containers walked."""
    if isinstance(obj, dict):
        return {k: _python(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_python(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return _python(obj.tolist())
    return obj
