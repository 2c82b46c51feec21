"""Shared helpers for the bench/ scripts: side-by-side timing, memory probes, one-line figures.

Every bench script prints its figures through ``figure()``, one line each, starting with ``FIGURE``
so ``bench/all.sh`` can collect them::

    FIGURE heads/mtl_step_over_single_head = 1.02  target <= 1.05 MET  | mtl 0.53 s/step, single 0.52 s/step

Ratios are the figures (measured side by side in one run, rounds interleaved so that load from
other processes hits every variant alike); absolute numbers ride along after ``|``.

Example:
    >>> import time
    >>> times = interleaved({"a": lambda: None, "b": lambda: time.sleep(0.001)}, rounds=3, warmup=0)
    >>> median(times["b"]) > median(times["a"])
    True
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time

# Quiet TensorFlow's C++ logging before any script imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROBE_FLAG = "--_probe"


def command_line() -> str:
    """The command that is running, as a person would retype it from the repository root.

    Example:
        >>> isinstance(command_line(), str)
        True
    """
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def header(title: str) -> None:
    """Print what is measured, by which command, on which machine (CPU count, load)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {title}")
    print(f"# command: {command_line()}")
    print(f"# machine: {platform.machine()} {os.cpu_count()} CPUs, load average {load:.2f} at start; "
          f"python {platform.python_version()}", flush=True)


def _meets(value: float, target) -> str:
    op, bound = target
    ok = value <= bound if op == "<=" else value >= bound
    return "MET" if ok else "MISSED"


def figure(name: str, value: float, target=None, details: str = "", fmt: str = "{:.3g}") -> str:
    """Print (and return) one figure line; ``target`` is ``("<=", 1.05)`` or ``(">=", 5)`` or None.

    Example:
        >>> line = figure("demo/ratio", 1.02, ("<=", 1.05), "a 1.0 s, b 0.98 s")
        FIGURE demo/ratio = 1.02  target <= 1.05 MET  | a 1.0 s, b 0.98 s
    """
    text = f"FIGURE {name} = {fmt.format(value)}"
    if target is not None:
        text += f"  target {target[0]} {target[1]:g} {_meets(value, target)}"
    if details:
        text += f"  | {details}"
    print(text, flush=True)
    return text


def interleaved(fns: dict, rounds: int = 5, warmup: int = 1) -> dict:
    """Time each callable ``rounds`` times, one of each per round, rotating the order every round.

    ``warmup`` untimed calls of each come first (tracing, caches). Returns ``{name: [seconds...]}``.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values) -> float:
    """Median of a list of timings (robust to the odd slow round on a shared machine)."""
    return statistics.median(values)


def spread(values) -> str:
    """``min–max`` of timings, for printing next to a median."""
    return f"{min(values):.3g}-{max(values):.3g}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux ``/proc``; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def gpu_peak_mb(reset: bool = False, device: str = "GPU:0") -> float:
    """Peak memory TensorFlow's allocator handed out on ``device`` since the last reset, in MiB."""
    import tensorflow as tf

    peak = tf.config.experimental.get_memory_info(device)["peak"] / (1024 * 1024)
    if reset:
        tf.config.experimental.reset_memory_stats(device)
    return peak


def probe_spec() -> dict | None:
    """The spec passed with ``--_probe`` when this process is a probe, else None."""
    if PROBE_FLAG in sys.argv:
        return json.loads(sys.argv[sys.argv.index(PROBE_FLAG) + 1])
    return None
