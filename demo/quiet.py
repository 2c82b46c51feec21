"""Holding back known chatter that native libraries write straight to file descriptor 2.

TensorFlow, the TFLite converter and LiteRT print some lines from C++ (``INFO: Created TensorFlow
Lite XNNPACK delegate for CPU.``, start-up notices) that no Python logging setting reaches. Inside
``held_stderr(noise)`` descriptor 2 points at a temp file; on the way out the lines matching ``noise``
are dropped and everything else is written to stderr, so a real error is never lost (and all of it
is shown when the block raises). With ``MTL_KERAS_VERBOSE=1`` (or ``--verbose`` on the command
lines, which sets it) nothing is held back. TensorFlow-free: the device runner uses it too.

Example:
    >>> import re, sys
    >>> with held_stderr(re.compile(r"chatter")) as held:
    ...     _ = sys.stderr.write("chatter\\n")
    >>> held.kept
    ''
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

VERBOSE_ENV = "MTL_KERAS_VERBOSE"

# One-line notices of the TFLite converter and LiteRT, printed from C++ once per process or per conversion.
LITE_NOISE = re.compile(
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"
    r"|^INFO: Initialized TensorFlow Lite runtime\.$"
    r"|^fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+$"
)

# glog's prefix, e.g. "I0000 00:00:1795984002.034343   23227 port.cc:153] ".
GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")


def verbose() -> bool:
    """Whether ``MTL_KERAS_VERBOSE`` asks for every native log line.

    Example:
        >>> import os; os.environ.pop(VERBOSE_ENV, None); verbose()
        False
    """
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def drop_lines(text: str, noise: re.Pattern) -> str:
    """``text`` without the lines whose message (after any glog prefix) matches ``noise``.

    Args:
        text: captured output, several lines.
        noise: a compiled pattern searched in each line's message.

    Returns:
        The kept lines, line endings unchanged.

    Example:
        >>> drop_lines("I0000 00:00:1.2 9 port.cc:1] chatter\\nreal\\n", re.compile("^chatter"))
        'real\\n'
    """
    return "".join(line for line in text.splitlines(keepends=True) if not noise.search(GLOG_PREFIX.sub("", line)))


class held_stderr:
    """Descriptor 2 redirected to a temp file; on exit ``kept`` (what was not noise) goes to stderr.

    Example:
        >>> import re
        >>> with held_stderr(re.compile("x")) as held:
        ...     pass
        >>> held.kept
        ''
    """

    def __init__(self, noise: re.Pattern):
        self.noise = noise
        self.kept = ""

    def __enter__(self):
        self._file = None
        if verbose():
            return self
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, kind, error, tb):
        if self._file is None:
            return False
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        # When the block failed, the reason may be in a line that usually means nothing: show it all.
        self.kept = text if kind is not None else drop_lines(text, self.noise)
        if self.kept:
            sys.stderr.write(self.kept)
            sys.stderr.flush()
        return False
