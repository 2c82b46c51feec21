"""What an adaptive balancer costs per training step, against static (Keras' own train_step).

Figures (ratios of train-step times measured side by side in this one run, rounds interleaved):
  balancers/uncertainty_over_static   target <= 1.05
  balancers/dwa_over_static           target <= 1.05
  balancers/gradnorm_over_static      target <= 2
  balancers/pcgrad_over_static        target <= 2

How: one model per balancer (same trunk, the same 3 tasks, the same fixed batch), each compiled and
traced with two untimed warm-up steps; then every round times ``--steps`` train steps of each model,
rotating the order, and the median round is kept. PCGrad needs one backward pass per task through the
shared trunk (its Gram-matrix surgery itself is K×K), so its cost grows with the trunk's share of the
step; GradNorm adds only the per-task backward passes from the heads to the last shared layer.

Run from the repository root:  python bench/balancers.py [--trunk resnet50 --image-size 64 --rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)

BALANCERS = ["static", "uncertainty", "dwa", "gradnorm", "pcgrad"]
TARGETS = {"uncertainty": 1.05, "dwa": 1.05, "gradnorm": 2.0, "pcgrad": 2.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", default="mobilenet_v3_small")
    p.add_argument("--tasks", default="shape,color,box")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="train steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    p.add_argument("--jit-compile", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    _timing.header(f"balancers: train-step time of each balancer / static ({args.tasks}, {args.trunk}, "
                   f"{args.image_size} px, batch {args.batch_size})")
    import keras
    import tensorflow as tf

    import mtl_keras as mk

    tf.get_logger().setLevel("ERROR")
    tasks = mk.data.tasks_for("shapes", names=args.tasks)
    ds = mk.data.load("shapes", split="train", image_size=args.image_size, batch_size=args.batch_size,
                      tasks=tasks, size=args.batch_size)
    x, y, w = next(iter(ds))
    steps = {}
    for name in BALANCERS:
        keras.utils.set_random_seed(0)
        model = mk.build_model(tasks, trunk=args.trunk, image_size=args.image_size, weights=None)
        model.compile(optimizer="adam", balancer=name, jit_compile=args.jit_compile)

        def run(model=model):
            for _ in range(args.steps):
                model.train_on_batch(x, y, sample_weight=w)

        steps[name] = run
    times = _timing.interleaved(steps, rounds=args.rounds, warmup=1)
    per_step = {k: _timing.median(v) / args.steps for k, v in times.items()}
    for name in BALANCERS[1:]:
        _timing.figure(
            f"balancers/{name}_over_static", per_step[name] / per_step["static"], ("<=", TARGETS[name]),
            f"{name} {per_step[name]:.3f} s/step, static {per_step['static']:.3f} s/step",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
