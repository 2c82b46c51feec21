"""What a shared trunk saves: one multi-task model against one head, and against T separate models.

Figures (ratios measured side by side in this one run, rounds interleaved):
  heads/mtl_step_over_single_head       train-step time, T-head model ÷ same trunk with one head  (target <= 1.05)
  heads/separate_over_mtl               one train step of each of T single-task models ÷ one MTL step (target >= T - 0.2)
  heads/params_separate_over_mtl        parameters, T models ÷ the multi-task model (absolute counts alongside)
  heads/peak_memory_mtl_over_single_head    peak memory, multi-task ÷ one head
  heads/peak_memory_separate_over_mtl       peak memory, T single-task models in one process ÷ multi-task

How: two worker processes, started from this script. One holds the multi-task model, the other
the T single-task models (its first one, for the first task, is the "one head" model). Each
builds, compiles and traces its models (two warm-up steps each), then waits; this process asks
them in turn for one timed train step per round, so only one works at a time and load from the
rest of the machine falls on both alike. Peak memory on CPU is each worker's peak resident set
size minus its size before building (for the one-head figure: read after the first model's
warm-up, before the next model is built); on a GPU it is TensorFlow's allocator peak on GPU:0.
Every step uses one fixed batch, so the input pipeline is not in these figures.

Run from the repository root:  python bench/heads.py [--image-size 64 --batch-size 16 --rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)

DEFAULT_TASKS = "shape,color,present,box,count"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated scene tasks; the first is the single head")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (the median is reported)")
    args, _ = p.parse_known_args(argv)
    return args


def task_names(args):
    return [n.strip() for n in args.tasks.split(",") if n.strip()]


# ----- worker side ------------------------------------------------------------------------------
def worker(spec):
    """Build one configuration, warm it up, then answer ``step`` requests on stdin with timings."""
    import tensorflow as tf

    import mtl_keras as mk

    tf.get_logger().setLevel("ERROR")  # T models in one process: TF's retracing warning is expected
    args = parse_args(spec["argv"])
    names = task_names(args)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    ds = mk.data.load("shapes", split="train", image_size=args.image_size, batch_size=args.batch_size,
                      tasks=mk.data.tasks_for("shapes", names=names), size=args.batch_size)
    x, y, w = next(iter(ds))

    def memory():
        if gpu:
            return _timing.gpu_peak_mb()
        return _timing.peak_rss_mb() - before

    before = _timing.current_rss_mb()
    if gpu:
        _timing.gpu_peak_mb(reset=True)
    groups = [names] if spec["config"] == "mtl" else [[n] for n in names]
    steps, params, first_memory = [], [], None
    for group in groups:
        model = mk.build_model(mk.data.tasks_for("shapes", names=group), trunk=args.trunk,
                               image_size=args.image_size, weights=None)
        model.compile(optimizer="adam")
        yy, ww = {n: y[n] for n in group}, {n: w[n] for n in group}
        step = (lambda m, yy, ww: lambda: m.train_on_batch(x, yy, sample_weight=ww))(model, yy, ww)
        for _ in range(2):  # the first call traces the train function
            step()
        if first_memory is None:
            first_memory = memory()
        steps.append(step)
        params.append(model.count_params())
    reply = {"ready": True, "params": params, "memory_first_mb": first_memory, "memory_mb": memory(),
             "memory_kind": "gpu" if gpu else "cpu"}
    print(json.dumps(reply), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        times = []
        for step in steps:
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        print(json.dumps({"times": times}), flush=True)


class Worker:
    """This script running as a worker process, spoken to by JSON lines."""

    def __init__(self, config, argv):
        spec = json.dumps({"config": config, "argv": argv})
        self.proc = subprocess.Popen([sys.executable, sys.argv[0], _timing.PROBE_FLAG, spec],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.config = config

    def read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the {self.config} worker stopped (exit {self.proc.wait()}); see its messages above")

    def step(self):
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        return self.read()["times"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait(timeout=60)


# ----- main side --------------------------------------------------------------------------------
def main():
    spec = _timing.probe_spec()
    if spec is not None:
        return worker(spec)
    args = parse_args()
    names = task_names(args)
    t = len(names)
    _timing.header(f"shared trunk cost: {t}-task {args.trunk} vs one head vs {t} separate models, "
                   f"{args.image_size} px, batch {args.batch_size}")
    argv = sys.argv[1:]
    workers = {}
    try:
        # Built one after the other: both trace at the same time would only slow each other down.
        for config in ("mtl", "separate"):
            workers[config] = Worker(config, argv)
            workers[config].ready = workers[config].read()
        times = {"mtl": [], "single": [], "separate": [], "each": []}
        for r in range(args.rounds):
            order = ("mtl", "separate") if r % 2 == 0 else ("separate", "mtl")
            for config in order:
                got = workers[config].step()
                if config == "mtl":
                    times["mtl"].append(got[0])
                else:
                    times["single"].append(got[0])
                    times["separate"].append(sum(got))
                    times["each"].append(got)
    finally:
        for w in workers.values():
            w.close()
    rounds = times.pop("each")
    each = [_timing.median([r[i] for r in rounds]) for i in range(t)]
    med = {k: _timing.median(v) for k, v in times.items()}
    ips = {k: args.batch_size / med[k] for k in ("mtl", "single")}
    _timing.figure(
        "heads/mtl_step_over_single_head", med["mtl"] / med["single"], ("<=", 1.05),
        f"{t} heads {med['mtl']:.3f} s/step ({ips['mtl']:.1f} img/s, rounds {_timing.spread(times['mtl'])} s), "
        f"1 head {med['single']:.3f} s/step ({ips['single']:.1f} img/s, rounds {_timing.spread(times['single'])} s)",
    )
    _timing.figure(
        "heads/separate_over_mtl", med["separate"] / med["mtl"], (">=", t - 0.2),
        f"{t} single-task models {med['separate']:.3f} s for one step each, multi-task {med['mtl']:.3f} s/step",
    )
    mtl, sep = workers["mtl"].ready, workers["separate"].ready
    # Why the ratio can sit below T: a single-task model keeps only the layers its head reads, so a
    # box-only model (its head reads the stride-16 tap) has no conv5 stage to run.
    print("# separate models, median step and parameters: " + ", ".join(
        f"{n} {s:.3f} s ({p / 1e6:.1f} M)" for n, s, p in zip(names, each, sep["params"])), flush=True)
    p_mtl, p_single, p_sep = mtl["params"][0], sep["params"][0], sum(sep["params"])
    _timing.figure(
        "heads/params_separate_over_mtl", p_sep / p_mtl, None,
        f"multi-task {p_mtl:,}, one head {p_single:,} (multi-task ÷ one head {p_mtl / p_single:.3f}), "
        f"{t} separate {p_sep:,}",
    )
    if mtl["memory_kind"] == "gpu":
        how = "TensorFlow GPU:0 allocator peak"
    else:
        how = "CPU: peak RSS of the worker process minus its RSS before building, build + 2 train steps"
    m_mtl, m_single, m_sep = mtl["memory_mb"], sep["memory_first_mb"], sep["memory_mb"]
    _timing.figure(
        "heads/peak_memory_mtl_over_single_head", m_mtl / m_single, None,
        f"{how}: multi-task {m_mtl:.0f} MiB, one head {m_single:.0f} MiB",
    )
    _timing.figure(
        "heads/peak_memory_separate_over_mtl", m_sep / m_mtl, None,
        f"{how}: {t} separate models in one process {m_sep:.0f} MiB, multi-task {m_mtl:.0f} MiB",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
