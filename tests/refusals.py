"""The shared assertion of the bad-input tests: a command refused with one line and nothing written.

Used by tests/test_bad_inputs.py (the catalogue) and tests/test_resume.py (a run that stops part-way).
"""

from __future__ import annotations

import os

# The smallest training run these tests start (seconds on 2 cores).
TINY = ["--trunk", "mobilenet_v3_small", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
        "--train-size", "8", "--val-size", "4", "--test-size", "4"]


def _snapshot(paths):
    return {p: (open(p, "rb").read() if os.path.isfile(p) else None) for p in map(str, paths)}


def check_refused(capsys, runner, argv, *words, absent=(), unchanged=()):
    """Run ``runner(argv)``; assert a non-zero status, one ``error:`` line with ``words``, nothing written."""
    before = _snapshot(unchanged)
    status = runner([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status != 0, captured.err[-2000:]
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    # Progress lines may come first (export logs its steps); the error is one line, the last.
    assert lines and lines[-1].startswith("error: "), captured.err[-2000:]
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], captured.err[-2000:]
    for w in words:
        assert w in lines[-1], (w, lines[-1])
    for p in absent:
        assert not os.path.exists(p), f"{p} was written"
    assert _snapshot(unchanged) == before, "a file that existed before was changed"
    return lines[-1]
