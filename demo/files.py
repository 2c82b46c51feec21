"""Atomic file writes (temp file in the same folder, then ``os.replace``), TensorFlow-free.

A reader never sees a half-written file: either the old file or the complete new one. Shared by the
demo and the export stage.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> write_json(os.path.join(d, "a.json"), {"ok": True})
    >>> open(os.path.join(d, "a.json")).read().strip()
    '{\\n  "ok": true\\n}'
"""

from __future__ import annotations

import json
import os
import tempfile


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; on any error the old file (if any) is left as it was.

    Args:
        path: the destination file; its folder must exist.
        data: the bytes to write.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.bin"); write_bytes(p, b"abc"); open(p, "rb").read()
        b'abc'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (``mkstemp`` gives 0600).

    Example:
        >>> default_file_mode() & 0o600
        384
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text(path, text: str) -> None:
    """``write_bytes`` for UTF-8 text.

    Args:
        path: the destination file; its folder must exist.
        text: the text, written as UTF-8.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.md"); write_text(p, "# hi"); open(p).read()
        '# hi'
    """
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> None:
    """``write_bytes`` for JSON (indented, NaN written as null so every JSON reader accepts it).

    Args:
        path: the destination file; its folder must exist.
        obj: a JSON-serialisable object (NaN floats become null).

    Example:
        >>> import tempfile, os, json
        >>> p = os.path.join(tempfile.mkdtemp(), "x.json"); write_json(p, {"v": float("nan")}); json.load(open(p))
        {'v': None}
    """
    write_text(path, json.dumps(_finite(obj), indent=2) + "\n")


def _finite(obj):
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
