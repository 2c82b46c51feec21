"""`python -m demo MODEL.tflite --benchmark`: latency and memory per thread count, XNNPACK on and off.

What a user needs to choose settings on a Raspberry Pi or a phone. Each (threads, XNNPACK) setting runs
in a fresh worker process (``python -m demo.benchmark --worker ...``), because a process's peak RSS
only ever grows: measured in one process, every row would report the largest model state seen so far.
One more worker imports LiteRT and prepares the input but loads no model; its peak RSS is the
baseline, so ``peak - baseline`` is what the model itself costs. LiteRT, numpy and Pillow only.

Example:
    >>> doc = benchmark("runs/x/export/model_int8.tflite", threads=(1, 2), runs=10)  # doctest: +SKIP
    >>> [(r["threads"], r["xnnpack"]) for r in doc["rows"]]                            # doctest: +SKIP
    [(1, True), (1, False), (2, True), (2, False)]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

DEFAULT_THREADS = (1, 2, 4)
DEFAULT_RUNS = 30
WARMUP = 3
INPUTS = ("scenes", "random")
RESULT_NAME = "benchmark.json"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's flags on the demo's parser.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["--benchmark", "--benchmark-threads", "1,3"]).benchmark_threads
        [1, 3]
    """
    p.add_argument("--benchmark", action="store_true",
                   help="time the model alone (no pictures): first call, median, p90, images/s and peak memory for "
                        "each --benchmark-threads count, XNNPACK on and off; writes benchmark.json into --out")
    p.add_argument("--benchmark-runs", type=int, default=DEFAULT_RUNS, help="timed calls per setting (default: %(default)s)")
    p.add_argument("--benchmark-threads", type=parse_threads, default=list(DEFAULT_THREADS),
                   help="comma-separated thread counts (default: 1,2,4)")
    p.add_argument("--benchmark-input", choices=INPUTS, default="scenes",
                   help="a built-in rendered scene or random pixels (default: %(default)s)")


def parse_threads(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; anything else is a one-line argparse error.

    Example:
        >>> parse_threads("4, 1,4")
        [1, 4]
        >>> parse_threads("two")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: thread counts must be positive integers like 1,2,4, got 'two'
    """
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be positive integers like 1,2,4, got {text!r}")
    return values


def benchmark(model_path, threads=DEFAULT_THREADS, runs: int = DEFAULT_RUNS, source: str = "scenes",
              warmup: int = WARMUP, log=None) -> dict:
    """Measure every (threads, XNNPACK on/off) setting in its own worker process; return the report.

    Raises ``demo.runner.ModelError`` (one line) when the file is not a usable multi-task .tflite.

    Example:
        >>> benchmark("missing.tflite")
        Traceback (most recent call last):
        ...
        demo.runner.ModelError: model file not found: missing.tflite
    """
    # lazy (here and below): each measuring worker process imports only what its setting needs, so its
    # peak memory is the setting's own (the baseline process imports the same minus the model).
    from demo.runner import LiteModel

    # Refuses a bad file here, in one line, before any worker starts (without XNNPACK: no weights packed).
    model = LiteModel(model_path, threads=1, xnnpack=False)
    settings = [(t, x) for t in threads for x in (True, False)]
    baseline = _spawn(model_path, model.image_size, None, None, runs, warmup, source)
    rows = []
    for t, x in settings:
        if log:
            log(f"  {t} thread{'s' * (t != 1)}, XNNPACK {'on' if x else 'off'} ...")
        row = {"threads": t, "xnnpack": x, **_spawn(model_path, model.image_size, t, x, runs, warmup, source)}
        if row.get("peak_rss_mib") is not None and baseline.get("peak_rss_mib") is not None:
            row["model_rss_mib"] = round(row["peak_rss_mib"] - baseline["peak_rss_mib"], 1)
        rows.append(row)
    return {
        "model": os.path.basename(os.fspath(model_path)), "image_size": model.image_size,
        "input_dtype": model.input_dtype.name, "input": source, "runs": int(runs), "warmup": int(warmup),
        "baseline_rss_mib": baseline.get("peak_rss_mib"), "baseline_error": baseline.get("error"),
        "machine": machine(), "rows": rows,
    }


def machine() -> dict:
    """Where the numbers were measured (they only hold for this kind of machine).

    Example:
        >>> sorted(machine())
        ['cpu_count', 'litert', 'load_average', 'machine', 'platform', 'python']
    """
    try:  # lazy: as above, the workers' memory
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # installed without metadata (copied onto a device): the version is optional
        litert = None
    try:
        # Other work on the cores slows multi-threaded rows most: the numbers say how busy it was.
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "load_average": load, "python": platform.python_version(), "litert": litert}


def format_table(doc: dict) -> str:
    """The report as a fixed-width table, one row per setting.

    Example:
        >>> row = {"threads": 2, "xnnpack": True, "load_ms": 5.0, "first_ms": 3.0, "median_ms": 1.0,
        ...        "p90_ms": 1.5, "images_per_s": 1000.0, "peak_rss_mib": 60.0, "model_rss_mib": 10.0}
        >>> print(format_table({"rows": [row], "baseline_rss_mib": 50.0}))
        threads  XNNPACK  load ms  first ms  median ms  p90 ms  images/s  peak RSS MiB  model MiB
              2  on          5.00      3.00       1.00    1.50    1000.0          60.0       10.0
        baseline (LiteRT imported, no model): 50.0 MiB peak RSS
    """
    header = ["threads", "XNNPACK", "load ms", "first ms", "median ms", "p90 ms", "images/s", "peak RSS MiB", "model MiB"]
    lines = []
    for r in doc["rows"]:
        head = [str(r["threads"]), "on" if r["xnnpack"] else "off"]
        if r.get("error"):
            lines.append(head + [f"failed: {r['error']}"])
            continue
        lines.append(head + [_fmt(r.get("load_ms")), _fmt(r.get("first_ms")), _fmt(r.get("median_ms")),
                             _fmt(r.get("p90_ms")), _fmt(r.get("images_per_s"), ".1f"),
                             _fmt(r.get("peak_rss_mib"), ".1f"), _fmt(r.get("model_rss_mib"), ".1f")])
    widths = [max([len(header[i])] + [len(ln[i]) for ln in lines if len(ln) > i and not ln[i].startswith("failed")])
              for i in range(len(header))]
    out = ["  ".join(h.ljust(w) if i == 1 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for ln in lines:
        out.append("  ".join(c.ljust(widths[i]) if i == 1 or c.startswith("failed") else c.rjust(widths[i])
                             for i, c in enumerate(ln)).rstrip())
    base = doc.get("baseline_rss_mib")
    out.append(f"baseline (LiteRT imported, no model): {_fmt(base, '.1f')} MiB peak RSS" if base is not None
               else f"baseline: not measured ({doc.get('baseline_error') or 'peak RSS is not available here'})")
    return "\n".join(out)


def run(args) -> int:
    """``python -m demo MODEL --benchmark``: print the table, write benchmark.json; 0 ok, 1 a setting failed, 2 bad use.

    Example:
        >>> ns = argparse.Namespace(model="x.tflite", inputs=["cat.jpg"], samples=0)
        >>> run(ns)  # and says why on stderr
        2
    """
    # lazy: as in benchmark(), the workers' memory
    from demo import files
    from demo.runner import ModelError

    if args.inputs or args.samples:
        # Timing pictures of different sizes mixes decoding and resizing into the model's latency.
        print("error: --benchmark times the model alone; run it without pictures or --samples "
              "(then run the demo on them separately)", file=sys.stderr)
        return 2
    if args.benchmark_runs < 1:
        print(f"error: --benchmark-runs must be >= 1, got {args.benchmark_runs}", file=sys.stderr)
        return 2
    print(f"benchmarking {args.model}: {args.benchmark_runs} runs per setting, each in a fresh process ...")
    try:
        doc = benchmark(args.model, args.benchmark_threads, args.benchmark_runs, args.benchmark_input, log=print)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = os.path.join(args.out, RESULT_NAME)
    try:
        os.makedirs(args.out, exist_ok=True)
        files.write_json(path, doc)
    except OSError as e:
        print(f"error: cannot write {path} ({e.strerror or e})", file=sys.stderr)
        return 2
    print(format_table(doc))
    print(f"wrote {path}")
    return 1 if any(r.get("error") for r in doc["rows"]) else 0


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def _spawn(model_path, size, threads, xnnpack, runs, warmup, source) -> dict:
    """One worker process; its last stdout line is its JSON result."""
    cmd = [sys.executable, "-m", "demo.benchmark", "--worker", os.fspath(model_path), "--size", str(size),
           "--runs", str(runs), "--warmup", str(warmup), "--input", source]
    if threads is not None:
        cmd += ["--threads", str(threads)] + ([] if xnnpack else ["--no-xnnpack"])
    else:
        cmd += ["--baseline"]
    # The worker must import this same demo/ folder, wherever the user started from.
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": _PACKAGE_ROOT + (os.pathsep + path if path else "")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    why = tail[-1] if tail else f"exit status {proc.returncode}"
    if proc.returncode < 0:
        why = f"the worker was killed by signal {-proc.returncode} ({why})"
    return {"error": why}


def _input(size: int, source: str) -> np.ndarray:
    if source == "random":
        return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    from demo.scenes import render_scene  # lazy: the renderer only for the scenes input

    return render_scene(seed=0, split="test", index=0, image_size=size).image


def _peak_rss_mib():
    """This process's peak resident memory in MiB: ``VmHWM`` where /proc has it (Linux, Android).

    Not ``ru_maxrss`` there: Linux carries the parent's peak into a child across fork (or vfork) and
    exec, so a worker started by a parent that had loaded a model would report the parent's peak.
    ``VmHWM`` belongs to the memory map exec made. Elsewhere (macOS) ``ru_maxrss`` is what there is.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:  # lazy: Unix only
        import resource
    except ImportError:  # not on Windows; the latency columns still hold
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def _worker(argv) -> int:
    """Measure one setting in this process and print one JSON line (run by ``_spawn``)."""
    p = argparse.ArgumentParser(prog="python -m demo.benchmark --worker")
    p.add_argument("--worker", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-xnnpack", action="store_true")
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    p.add_argument("--warmup", type=int, default=WARMUP)
    p.add_argument("--input", choices=INPUTS, default="scenes")
    args = p.parse_args(argv)
    # The baseline does all a setting does except load the model: the same imports and the same input.
    # LiteModel imports LiteRT only when it loads a model, so the baseline imports it here itself.
    import ai_edge_litert.interpreter  # noqa: F401

    from demo.runner import LiteModel, ModelError, latency_summary

    image = _input(args.size, args.input)
    if args.baseline:
        print(json.dumps({"peak_rss_mib": _peak_rss_mib()}))
        return 0
    try:
        t = time.perf_counter()
        model = LiteModel(args.worker, threads=args.threads, xnnpack=not args.no_xnnpack)
        load_ms = (time.perf_counter() - t) * 1000.0
        first = model.time_ms(image, runs=1, warmup=0)[0]
        times = model.time_ms(image, runs=args.runs, warmup=args.warmup)
    except (ModelError, ValueError, RuntimeError) as e:
        print(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, file=sys.stderr)
        return 1
    summary = latency_summary(times)
    median = summary["median_ms"]
    print(json.dumps({
        "delegate": model.delegate(), "load_ms": round(load_ms, 3), "first_ms": round(first, 3),
        "median_ms": median, "p90_ms": summary["p90_ms"],
        # Single-image calls at the median latency: one number a user can compare across settings.
        "images_per_s": round(1000.0 / median, 1) if median else None,
        "runs": summary["runs"], "peak_rss_mib": _peak_rss_mib(),
    }))
    return 0


if __name__ == "__main__":
    if "--worker" not in sys.argv[1:]:
        print("error: run the benchmark as `python -m demo MODEL.tflite --benchmark`", file=sys.stderr)
        sys.exit(2)
    sys.exit(_worker(sys.argv[1:]))
