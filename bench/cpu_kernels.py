"""Which CPU kernels, precision and thread count make the train step fastest on this machine?

Figures (images/s of the first ÷ images/s of the second, measured side by side in this one run):
  cpu_kernels/onednn_over_eigen                 TF_ENABLE_ONEDNN_OPTS=1 ÷ =0, float32 (target >= 1: mtl_keras
                                                turns oneDNN on by default, also where TensorFlow would not)
  cpu_kernels/bfloat16_over_float32             mixed_bfloat16 ÷ float32, both with oneDNN
  cpu_kernels/default_threads_over_one_thread   TensorFlow's default thread pools ÷ TF_NUM_INTRAOP_THREADS=1 and
                                                TF_NUM_INTEROP_THREADS=1, float32 with oneDNN (ideal: the CPU count)
  cpu_kernels/probe_bfloat16_over_float32       what ``--mixed-precision auto``'s probe
                                                (``mtl_keras.train.precision.measure_cpu_bfloat16_speedup``) measures here,
                                                with the policy auto would pick; compare with bfloat16_over_float32

The step is the project's model (``mk.build_model``, default: shapes tasks shape, color, objects, mask on a
ResNet50 trunk at 64 px) compiled with Adam, ``train_on_batch`` on one in-memory batch: no input work.

Each configuration lives in its own worker process, because TensorFlow reads these environment variables
once, when it loads. The workers start together, build and trace their step (untimed), then wait; the
parent asks them in turn for ``--steps`` timed steps, one worker at a time, rotating which goes first
each round (A B C, B C A, C A B, ...), and takes each one's median. Idle workers sleep, so the one being
timed has the CPUs to itself (apart from other jobs on the machine, which the interleaving spreads).

Run from the repository root:  python bench/cpu_kernels.py [--rounds 3 --configs onednn,eigen,bfloat16,one_thread]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)

DEFAULT_TASKS = "shape,color,objects,mask"
# name -> (environment for TensorFlow, Keras dtype policy). Every worker gets all three variables set,
# so an outer TF_NUM_INTRAOP_THREADS or TF_ENABLE_ONEDNN_OPTS cannot leak into the comparison.
CONFIGS = {
    "onednn": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, "float32"),
    "eigen": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "float32"),
    "bfloat16": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, "mixed_bfloat16"),
    "one_thread": ({"TF_ENABLE_ONEDNN_OPTS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
                   "float32"),
}
THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
# figure -> (numerator config, denominator config, target); a figure needs both configs in --configs.
FIGURES = {
    "cpu_kernels/onednn_over_eigen": ("onednn", "eigen", (">=", 1.0)),
    "cpu_kernels/bfloat16_over_float32": ("bfloat16", "onednn", None),
    "cpu_kernels/default_threads_over_one_thread": ("onednn", "one_thread", None),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--tasks", default=DEFAULT_TASKS)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=1, help="train steps per worker per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--no-probe", action="store_true", help="skip the mixed-precision probe figure")
    p.add_argument("--timeout", type=float, default=900, help="seconds a worker may take to answer")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# Worker: one configuration, driven by one-line commands on stdin, answering one JSON line each.


def worker(spec: dict) -> int:
    start = time.perf_counter()
    import keras

    import mtl_keras as mk
    from mtl_keras.train import precision as perf

    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a private module; the figure does not depend on it
        onednn = None

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(spec["policy"])
    tasks = mk.data.tasks_for("shapes", names=spec["tasks"])
    data = mk.data.load("shapes", split="train", image_size=spec["image_size"], batch_size=spec["batch_size"],
                        tasks=tasks, size=spec["batch_size"])
    x, y, w = next(iter(data))
    model = mk.build_model(tasks, trunk=spec["trunk"], image_size=spec["image_size"], weights=None)
    model.compile(optimizer="adam")
    built = time.perf_counter()
    # The first step traces; the second still allocates and picks kernels (oneDNN primitive caches).
    model.train_on_batch(x, y, sample_weight=w)
    traced = time.perf_counter()
    model.train_on_batch(x, y, sample_weight=w)
    answer({"ready": True, "onednn": onednn, "policy": keras.mixed_precision.global_policy().name,
            "build_s": built - start, "trace_s": traced - built, "warm_step_s": time.perf_counter() - traced})
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "steps":
            t0 = time.perf_counter()
            for _ in range(int(rest[0])):
                model.train_on_batch(x, y, sample_weight=w)
            answer({"seconds": time.perf_counter() - t0})
        elif command == "probe":
            t0 = time.perf_counter()
            ratio = perf.measure_cpu_bfloat16_speedup()
            by_ratio = "mixed_bfloat16" if ratio >= perf.BFLOAT16_MIN_SPEEDUP else "float32"
            # What auto really picks here: where the CPU lacks native bfloat16 it ignores the ratio.
            auto = perf.choose_mixed_precision("auto", compute_capabilities=[], cpu_speedup=ratio)
            answer({"ratio": ratio, "seconds": time.perf_counter() - t0, "by_ratio": by_ratio,
                    "threshold": perf.BFLOAT16_MIN_SPEEDUP, "auto": str(auto)})
        elif command == "quit":
            break
    return 0


def answer(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


# ----------------------------------------------------------------------------------------------
# Parent.


class Worker:
    """A worker process for one configuration; ``ask`` sends a command and returns its JSON answer."""

    def __init__(self, name: str, spec: dict, timeout: float):
        env_vars, policy = CONFIGS[name]
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS and k != "TF_ENABLE_ONEDNN_OPTS"}
        env.update(env_vars)
        if "TF_NUM_INTRAOP_THREADS" in env_vars:
            # oneDNN inside TensorFlow uses TF's pool; OpenMP builds would read this instead.
            env["OMP_NUM_THREADS"] = env_vars["TF_NUM_INTRAOP_THREADS"]
        self.name, self.timeout = name, timeout
        # stderr to a file: TensorFlow's logging could fill a pipe nobody reads and stall the worker.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, sys.argv[0], _timing.PROBE_FLAG, json.dumps({**spec, "policy": policy})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )

    def read(self) -> dict:
        # Non-JSON lines (a library printing to stdout) are skipped.
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.log.seek(0)
                tail = " / ".join(self.log.read().strip().splitlines()[-3:])
                raise RuntimeError(f"worker {self.name} exited ({self.proc.wait()}): {tail}")
            if line.startswith("{"):
                return json.loads(line)
        raise TimeoutError(f"worker {self.name} gave no answer in {self.timeout:.0f} s")

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def main():
    spec = _timing.probe_spec()
    if spec is not None:
        return worker(spec)
    args = parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        print(f"unknown --configs {', '.join(unknown)}; choose from {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    _timing.header(f"CPU kernels, precision, threads: {len(tasks)}-task {args.trunk}, {args.image_size} px, "
                   f"batch {args.batch_size}, train_on_batch; configs {', '.join(names)}")
    spec = {"trunk": args.trunk, "tasks": tasks, "image_size": args.image_size, "batch_size": args.batch_size}
    start = time.perf_counter()
    workers = {}
    try:
        for name in names:
            workers[name] = Worker(name, spec, args.timeout)
        for name, w in workers.items():
            ready = w.read()
            print(f"# {name}: {CONFIGS[name][0]} policy {ready['policy']}, oneDNN enabled {ready['onednn']}; "
                  f"import+build {ready['build_s']:.0f} s, trace step {ready['trace_s']:.0f} s, "
                  f"second step {ready['warm_step_s']:.2f} s", flush=True)
        print(f"# all workers ready after {time.perf_counter() - start:.0f} s (they warm up together)", flush=True)

        measured = {name: [] for name in names}

        def timed(name):
            return lambda: measured[name].append(workers[name].ask(f"steps {args.steps}")["seconds"] / args.steps)

        _timing.interleaved({name: timed(name) for name in names}, rounds=args.rounds, warmup=0)
        step = {name: _timing.median(times) for name, times in measured.items()}
        rate = {name: args.batch_size / s for name, s in step.items()}

        def about(name):
            return f"{name} {rate[name]:.1f} img/s ({step[name]:.3g} s/step, {_timing.spread(measured[name])})"

        for figure, (a, b, target) in FIGURES.items():
            if a in rate and b in rate:
                _timing.figure(figure, rate[a] / rate[b], target, f"{about(a)}, {about(b)}")
        if not args.no_probe:
            # In the oneDNN float32 worker, now that the others are idle: the probe as auto runs it.
            host = "onednn" if "onednn" in workers else names[0]
            probe = workers[host].ask("probe")
            agree = ""
            if "bfloat16" in rate and "onednn" in rate:
                model_says = "mixed_bfloat16" if rate["bfloat16"] / rate["onednn"] >= probe["threshold"] else "float32"
                agree = f"; the {args.trunk} step would pick {model_says}: " + (
                    "agrees" if model_says == probe["by_ratio"] else "DISAGREES")
            _timing.figure("cpu_kernels/probe_bfloat16_over_float32", probe["ratio"], None,
                           f"probe ({host} worker) took {probe['seconds']:.1f} s and alone would pick "
                           f"{probe['by_ratio']}{agree}; here: {probe['auto']}")
    finally:
        for w in workers.values():
            w.close()
    print(f"# done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
