"""What each task balancer costs per training step, against static (Keras' own train_step).

Figures (ratios of train-step times measured side by side in this one run, rounds interleaved):
  balancers/<loss-level method>_over_static            target <= 1.02  (uncertainty, dwa, rlw, famo, gls, gradnorm*)
  balancers/<gradient method>@features_over_static     target <= 1.3   (pcgrad, mgda, cagrad, nash_mtl, ...)
  balancers/<gradient method>@parameters_over_static   no target: K backward passes through the trunk

How: one model per (balancer, level) (the same trunk, tasks and fixed batch), each compiled and traced
with an untimed warm-up; then every round times ``--steps`` train steps of each model, rotating the
order, and the median round is kept. Every method registered in ``mtl_keras.balancing`` is measured
(``--balancers`` picks some). *GradNorm is loss-level for the model but measures per-task gradient
norms on the last shared layer each step, so its target is the gradient methods' 1.3.

At the features level a gradient method pays K backward passes through the heads (to the shared
features) and one through the trunk; at the parameters level K through the whole network.

Run from the repository root:
  python bench/balancers.py                         # ResNet50, shape,color,count,objects,mask, 64 px
  python bench/balancers.py --balancers static,mgda,pcgrad --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)

LOSS_TARGET = 1.02
GRADIENT_TARGET = 1.3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--tasks", default="shape,color,count,objects,mask")
    p.add_argument("--balancers", default="all", help="comma-separated names, or all (every registered one)")
    p.add_argument("--levels", default="features,parameters", help="gradient levels to time gradient methods at")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="train steps per timed round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    p.add_argument("--jit-compile", action="store_true")
    return p.parse_args(argv)


def variants(names, levels, balancers, gramian_base) -> list:
    """The ``compile(balancer=...)`` names to time: gradient methods once per level (``name@level``).

    Example:
        >>> class G: pass
        >>> class M(G): pass
        >>> class L: pass
        >>> variants(["static", "mgda"], ["features"], {"static": L, "mgda": M}, G)
        ['static', 'mgda@features']
    """
    out = []
    for name in names:
        if issubclass(balancers[name], gramian_base):
            out += [f"{name}@{level}" for level in levels]
        else:
            out.append(name)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    _timing.header(f"balancers: train-step time of each balancer / static ({args.tasks}, {args.trunk}, "
                   f"{args.image_size} px, batch {args.batch_size})")
    import keras
    import tensorflow as tf

    import mtl_keras as mk
    from mtl_keras.balancing import BALANCERS
    from mtl_keras.balancing.base import GramianBalancer

    tf.get_logger().setLevel("ERROR")
    names = sorted(BALANCERS) if args.balancers == "all" else [n.strip() for n in args.balancers.split(",")]
    names = ["static"] + [n for n in names if n != "static"]
    levels = [v.strip() for v in args.levels.split(",") if v.strip()]
    tasks = mk.data.tasks_for("shapes", names=args.tasks)
    ds = mk.data.load("shapes", split="train", image_size=args.image_size, batch_size=args.batch_size,
                      tasks=tasks, size=args.batch_size)
    x, y, w = next(iter(ds))
    steps = {}
    for label in variants(names, levels, BALANCERS, GramianBalancer):
        keras.utils.set_random_seed(0)
        model = mk.build_model(tasks, trunk=args.trunk, image_size=args.image_size, weights=None)
        model.compile(optimizer="adam", balancer=label, jit_compile=args.jit_compile)

        def run(model=model):
            for _ in range(args.steps):
                model.train_on_batch(x, y, sample_weight=w)

        steps[label] = run
        print(f"# built {label}", flush=True)
    times = _timing.interleaved(steps, rounds=args.rounds, warmup=1)
    per_step = {k: _timing.median(v) / args.steps for k, v in times.items()}
    for label in steps:
        if label == "static":
            continue
        name = label.split("@")[0]
        level = label.split("@")[1] if "@" in label else None
        target = None
        if level == "features" or name == "gradnorm":
            target = ("<=", GRADIENT_TARGET)
        elif level is None:
            target = ("<=", LOSS_TARGET)
        _timing.figure(
            f"balancers/{label}_over_static", per_step[label] / per_step["static"], target,
            f"{label} {per_step[label]:.3f} s/step, static {per_step['static']:.3f} s/step",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
