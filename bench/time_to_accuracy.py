"""Do the auxiliary tasks pay for their compute? Images and seconds to reach a shape accuracy.

Trains two models on the same trunk, data, recipe and budget, one after the other in this run:
  mtl     the main job's tasks (``--tasks``, default shape,color,objects,mask) on one shared trunk
  single  the ``--target`` task (``shape``) alone on the same trunk
The main job's model has its ``--depends-on`` and ``--dependencies-only`` (as ``make demo``: shape and
color read the detector's largest object and only that, the mask reads its class map).
Both see the same fresh training scenes in the same order (no scene is shown twice) with the same
learning-rate schedule; every ``--eval-every`` training images each is scored on the same
validation scenes. For each threshold (``--thresholds``, default 0.80 and 0.90) it prints the
training images and training seconds (evaluation excluded) each model needed to first reach it,
or "not reached" with its best value, and the ratios:

  FIGURE time_to_accuracy/images_single_over_mtl@0.9   > 1: the multi-task model needs fewer images
  FIGURE time_to_accuracy/seconds_single_over_mtl@0.9  > 1: ... and less time, its extra heads paid for

When only the multi-task model reaches a threshold, the ratio is printed as a lower bound
(``>= budget ÷ its images``): the single-task model needs more than the whole budget.

The defaults are the main job's recipe (``make demo``: batch 16, AdamW 2e-3, 10 % warm-up, cosine
decay over the budget). Run from the repository root:  python bench/time_to_accuracy.py
(about 23 minutes on 2 AVX-512 CPU cores at the defaults; ``--images 640 --eval-every 320`` for a smoke
run). ``bench/all.sh`` runs it only with ``BENCH_LONG=1``.
"""
# bench: long

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="shapes")
    p.add_argument("--tasks", default="shape,color,objects,mask")
    p.add_argument("--target", default="shape", help="the task whose validation accuracy is timed")
    p.add_argument("--depends-on", default="shape=objects,color=objects,mask=objects",
                   help="as for mtl-keras train (multi-task model only; default: the main job's)")
    p.add_argument("--dependencies-only", default="shape,color",
                   help="as for mtl-keras train (multi-task model only; default: the main job's)")
    p.add_argument("--thresholds", default="0.8,0.9")
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--images", type=int, default=12800, help="training images per model (the budget)")
    p.add_argument("--eval-every", type=int, default=800, help="training images between two validations")
    p.add_argument("--val-size", type=int, default=300)
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def first_reaching(curve, threshold):
    """The first ``(images, seconds, value)`` of ``curve`` whose value reaches ``threshold``, or None.

    Example:
        >>> first_reaching([(320, 10.0, 0.5), (640, 20.0, 0.85), (960, 30.0, 0.95)], 0.8)
        (640, 20.0, 0.85)
        >>> first_reaching([(320, 10.0, 0.5)], 0.8) is None
        True
    """
    return next((point for point in curve if point[2] >= threshold), None)


def train_curve(names, args):
    """Train a model of tasks ``names``; return ``[(images, train_seconds, target_accuracy), ...]``."""
    import keras

    import mtl_keras as mk
    from mtl_keras.train.recipe import configure_tasks, make_optimizer

    keras.utils.set_random_seed(args.seed)
    from mtl_keras.cli.arguments import parse_dependencies_only, parse_depends_on

    tasks = mk.data.tasks_for(args.data, names=names)
    # The single-task model has no other head to depend on.
    depends_on = parse_depends_on(args.depends_on, names) if len(names) > 1 else {}
    only = parse_dependencies_only(args.dependencies_only, depends_on, names) if depends_on else ()
    configure_tasks(tasks, args.label_smoothing, depends_on, dependencies_only=only)
    steps_per_round = max(args.eval_every // args.batch_size, 1)
    rounds = max(args.images // (steps_per_round * args.batch_size), 1)
    total_steps = steps_per_round * rounds
    # One pass over fresh scenes, read across rounds (steps_per_epoch keeps Keras' iterator open).
    train = mk.data.load(args.data, "train", image_size=args.image_size, batch_size=args.batch_size,
                         tasks=tasks, size=total_steps * args.batch_size, seed=args.seed)
    val = mk.data.load(args.data, "val", image_size=args.image_size, batch_size=args.batch_size,
                       tasks=tasks, size=args.val_size, seed=args.seed)
    model = mk.build_model(tasks, trunk=args.trunk, image_size=args.image_size, weights=None)
    model.compile(optimizer=make_optimizer(args.optimizer, args.learning_rate, total_steps,
                                           int(round(args.warmup * total_steps))))
    metric = f"{args.target}_accuracy" if len(tasks) > 1 else "accuracy"
    curve, seconds = [], 0.0
    for r in range(rounds):
        started = time.perf_counter()
        model.fit(train, epochs=r + 1, initial_epoch=r, steps_per_epoch=steps_per_round, verbose=0)
        seconds += time.perf_counter() - started
        value = float(model.evaluate(val, verbose=0, return_dict=True)[metric])
        curve.append(((r + 1) * steps_per_round * args.batch_size, round(seconds, 1), value))
        print(f"  {'+'.join(names)}: {curve[-1][0]} images, {seconds:.0f} s, {args.target} {value:.3f}", flush=True)
    return curve


def main(argv=None):
    args = parse_args(argv)
    _timing.header(f"time to {args.target} accuracy: {args.tasks} on one {args.trunk} vs {args.target} alone")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.target not in tasks:
        sys.exit(f"error: --target {args.target!r} is not one of --tasks {args.tasks!r}")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    curves = {"mtl": train_curve(tasks, args), "single": train_curve([args.target], args)}
    for threshold in thresholds:
        hits = {k: first_reaching(c, threshold) for k, c in curves.items()}
        described = []
        for k, hit in hits.items():
            best = max(v for _, _, v in curves[k])
            described.append(f"{k}: {hit[0]} images, {hit[1]} s" if hit else f"{k}: not reached (best {best:.3f})")
        details = "; ".join(described)
        if all(hits.values()):
            _timing.figure(f"time_to_accuracy/images_single_over_mtl@{threshold:g}", hits["single"][0] / hits["mtl"][0],
                           details=details)
            _timing.figure(f"time_to_accuracy/seconds_single_over_mtl@{threshold:g}", hits["single"][1] / hits["mtl"][1],
                           details=details)
        elif hits["mtl"]:
            # The single-task model used its whole budget without reaching it: a lower bound.
            images, seconds = curves["single"][-1][:2]
            for what, ratio in (("images", images / hits["mtl"][0]), ("seconds", seconds / hits["mtl"][1])):
                print(f"FIGURE time_to_accuracy/{what}_single_over_mtl@{threshold:g} >= {ratio:.3g}  | {details}",
                      flush=True)
        else:
            print(f"FIGURE time_to_accuracy/images_single_over_mtl@{threshold:g} = n/a  | {details}", flush=True)


if __name__ == "__main__":
    main()
