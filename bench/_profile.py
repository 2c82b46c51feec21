"""Where the CPU train step's time goes (run by hand; bench/all.sh skips ``_*.py``).

1. First step (tracing + first run) against steady steps.
2. A ``tf.profiler`` trace of a few steady steps, summarised by TensorFlow op type (self time),
   plus the share of wall time the profiled ops cover (the rest is Python/Keras host work).
3. Whether anything retraces: the train function's concrete-function count after the steps.

Run from the repository root:  python bench/_profile.py [--image-size 64 --batch-size 32 --steps 5]
The raw trace is kept under ``--logdir`` for TensorBoard's profile plugin.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--tasks", default="shape,color,present,box,count")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--logdir", default=None)
    p.add_argument("--no-fit-check", action="store_true", help="skip the fit retracing check")
    return p.parse_args()


def op_table(xplane_path):
    """Per-op rows of the profiler's ``framework_op_stats`` tool, read from an ``.xplane.pb`` trace."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    data, ok = plugin.xspace_to_tools_data([xplane_path], "framework_op_stats", {})
    if not ok:
        return []
    table = json.loads(data)
    if isinstance(table, list):
        table = table[0]
    cols = [c.get("id", c.get("label")) if isinstance(c, dict) else c for c in table["cols"]]
    return [dict(zip(cols, [cell.get("v") if isinstance(cell, dict) else cell for cell in row["c"]]))
            for row in table["rows"]]


def count_traces(model):
    """Count how often Keras traces train_step / test_step (each trace of a ResNet50 step costs seconds)."""
    counts = {"train": 0, "test": 0}
    for kind in counts:
        original = getattr(model, f"{kind}_step")

        def counted(data, _kind=kind, _original=original):
            counts[_kind] += 1  # runs only while tracing: the traced graph does not call Python
            return _original(data)

        setattr(model, f"{kind}_step", counted)
    return counts


def main():
    args = parse_args()
    _timing.header(f"CPU train-step profile: {args.trunk}, {args.image_size} px, batch {args.batch_size}")
    import tensorflow as tf

    import mtl_keras as mk

    tasks = mk.data.tasks_for("shapes", names=args.tasks.split(","))
    ds = mk.data.load("shapes", split="train", image_size=args.image_size, batch_size=args.batch_size,
                      tasks=tasks, size=args.batch_size)
    x, y, w = next(iter(ds))
    start = time.perf_counter()
    model = mk.build_model(tasks, trunk=args.trunk, image_size=args.image_size, weights=None)
    model.compile(optimizer="adam")
    build = time.perf_counter() - start
    traces = count_traces(model)
    start = time.perf_counter()
    model.train_on_batch(x, y, sample_weight=w)
    first = time.perf_counter() - start
    steps = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_on_batch(x, y, sample_weight=w)
        steps.append(time.perf_counter() - start)
    steady = _timing.median(steps)
    print(f"build+compile {build:.1f} s; first step {first:.1f} s; steady step {steady:.3f} s "
          f"({args.batch_size / steady:.1f} img/s); first ÷ steady {first / steady:.0f}")

    logdir = args.logdir or tempfile.mkdtemp(prefix="mtl_profile_")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y, sample_weight=w)
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    print(f"trace: {paths[0] if paths else 'none written'}")
    rows = op_table(paths[0]) if paths else []
    if rows:
        by_type = collections.Counter()
        for r in rows:
            by_type[r["type"]] += float(r["total_self_time"] or 0)
        total_us = sum(by_type.values())
        print(f"profiled op self time {total_us / 1e6:.2f} s over {args.steps} steps "
              f"({wall:.2f} s wall, {2 * wall:.2f} core-s on 2 cores): by op type")
        for op, us in by_type.most_common(args.top):
            print(f"  {op:40s} {us / 1e6:7.3f} s  {100 * us / total_us:5.1f} %")
    print(f"train_on_batch: train_step traced {traces['train']} time(s) over {2 * args.steps + 1} calls")
    if args.no_fit_check:
        return 0
    # fit with a short last batch (size not a multiple of the batch), two epochs, with validation.
    n = 2 * args.batch_size + 5
    train, val = mk.data.load("shapes", split=["train", "val"], image_size=args.image_size,
                              batch_size=args.batch_size, tasks=tasks, size=n)
    traces.update(train=0, test=0)
    start = time.perf_counter()
    model.fit(train, validation_data=val, epochs=2, verbose=0)
    print(f"fit, {n} images/epoch (last batch short), 2 epochs + validation: train_step traced "
          f"{traces['train']}x, test_step traced {traces['test']}x, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
