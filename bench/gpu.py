"""Training speed on a GPU: fp32 vs mixed precision vs mixed + XLA, 5-task ResNet50 at 224 px.

One prepared script for a GPU machine, about 5 minutes. It

1. finds the largest batch that fits in fp32 (the most memory-hungry mode): tries ``--max-batch``,
   halving on out-of-memory, and uses that batch for all three modes so the ratios compare like
   with like (a mode that still runs out of memory halves its own batch, which its line shows);
2. times ``--steps`` train steps of each mode on one batch already on the GPU (no input pipeline),
   after warm-up steps that trace/compile;
3. measures the built-in scenes pipeline on this machine's CPUs at the same size, against the
   fastest mode's consumption (does the data keep the GPU fed?).

Figures:
  gpu/mixed_over_fp32         images/s, mixed precision (``--mixed-precision auto``: bfloat16 on compute
                              capability >= 8.0, float16 before) ÷ fp32
  gpu/mixed_xla_over_fp32     images/s, mixed + XLA (``jit_compile=True``) ÷ fp32   (target >= 2)
  gpu/scenes_delivery_over_mixed_xla  scenes pipeline images/s ÷ mixed + XLA train images/s (>= 1 keeps it fed)

Without a visible GPU it stops at once with "no GPU visible" and exit status 77 (skipped).

Run from the repository root:  python bench/gpu.py [--image-size 224 --max-batch 256 --steps 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)

SKIPPED = 77
DEFAULT_TASKS = "shape,color,present,box,count"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--tasks", default=DEFAULT_TASKS)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-batch", type=int, default=256, help="first batch size tried; halved on out-of-memory")
    p.add_argument("--min-batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per mode (trace, XLA compile)")
    p.add_argument("--pipeline-batches", type=int, default=30, help="0 skips the pipeline figure")
    return p.parse_args(argv)


def is_oom(error: Exception) -> bool:
    import tensorflow as tf

    text = str(error)
    return isinstance(error, tf.errors.ResourceExhaustedError) or "OOM" in text or "out of memory" in text.lower()


class Mode:
    """One way of training: a dtype policy and whether XLA compiles the step."""

    def __init__(self, name, policy, jit):
        self.name, self.policy, self.jit = name, policy, jit

    def build(self, args, tasks):
        import keras

        import mtl_keras as mk

        keras.mixed_precision.set_global_policy(self.policy)
        try:
            model = mk.build_model(tasks, trunk=args.trunk, image_size=args.image_size, weights=None)
            model.compile(optimizer="adam", jit_compile=self.jit)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        return model


def host_batch(tasks, image_size, batch_size):
    """One real batch of scenes (so losses stay finite), rendered once on the CPUs."""
    import mtl_keras as mk

    ds = mk.data.load("shapes", split="train", image_size=image_size, batch_size=batch_size, tasks=tasks,
                      size=batch_size, augment=False)
    return next(iter(ds))


def device_batch(batch, batch_size):
    """The first ``batch_size`` samples, copied to the GPU once (the timing excludes host->device copies)."""
    import tensorflow as tf

    with tf.device("/GPU:0"):
        return tf.nest.map_structure(lambda t: tf.identity(t[:batch_size]), batch)


def time_mode(mode, args, tasks, batch_size, host):
    """(images/s, batch used, peak GPU MiB) for one mode, halving the batch on out-of-memory."""
    import gc

    import keras

    while True:
        model = None
        try:
            _timing.gpu_peak_mb(reset=True)
            model = mode.build(args, tasks)
            x, y, w = device_batch(host, batch_size)
            start = time.perf_counter()
            for _ in range(args.warmup):
                model.train_on_batch(x, y, sample_weight=w)
            warm = time.perf_counter() - start
            start = time.perf_counter()
            # train_on_batch returns numpy logs, so each step has finished when it returns.
            for _ in range(args.steps):
                model.train_on_batch(x, y, sample_weight=w)
            seconds = time.perf_counter() - start
            return args.steps * batch_size / seconds, batch_size, _timing.gpu_peak_mb(), warm
        except Exception as e:  # noqa: BLE001 - only out-of-memory is retried
            if not is_oom(e) or batch_size // 2 < args.min_batch:
                raise
            print(f"# {mode.name}: batch {batch_size} does not fit, trying {batch_size // 2}", flush=True)
            batch_size //= 2
        finally:
            del model
            keras.backend.clear_session()
            gc.collect()


def main():
    args = parse_args()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("bench/gpu.py: no GPU visible (tf.config.list_physical_devices('GPU') is empty); "
              "run it on a GPU machine with tensorflow[and-cuda]. Figures unmeasured.", file=sys.stderr)
        return SKIPPED
    _timing.header(f"GPU training speed: {args.trunk} multi-task at {args.image_size} px")
    import mtl_keras as mk
    from mtl_keras.train.precision import gpu_compute_capabilities, mixed_precision_policy

    details = tf.config.experimental.get_device_details(gpus[0])
    print(f"# GPU: {details.get('device_name', '?')}, compute capability {details.get('compute_capability')}, "
          f"{len(gpus)} visible", flush=True)
    mixed = mixed_precision_policy("auto", gpu_compute_capabilities())
    tasks = mk.data.tasks_for("shapes", names=[n for n in args.tasks.split(",") if n])
    modes = [Mode("fp32", "float32", False), Mode(mixed, mixed, False), Mode(f"{mixed}+xla", mixed, True)]
    results = {}
    batch = args.max_batch
    host = host_batch(tasks, args.image_size, batch)
    for mode in modes:
        rate, used, peak, warm = time_mode(mode, args, tasks, batch, host)
        if mode.name == "fp32":
            batch = used  # the largest fp32 batch is the batch for every mode
        results[mode.name] = rate
        print(f"# {mode.name}: {rate:.0f} img/s at batch {used}, peak {peak:.0f} MiB, warm-up {warm:.1f} s",
              flush=True)
    fp32, mix, xla = (results[m.name] for m in modes)
    _timing.figure("gpu/mixed_over_fp32", mix / fp32, None,
                   f"{mixed} {mix:.0f} img/s, fp32 {fp32:.0f} img/s, batch {batch}, {args.image_size} px")
    _timing.figure("gpu/mixed_xla_over_fp32", xla / fp32, (">=", 2),
                   f"{mixed}+XLA {xla:.0f} img/s, fp32 {fp32:.0f} img/s, batch {batch}, {args.image_size} px")
    if args.pipeline_batches > 0:
        ds = mk.data.load("shapes", split="train", image_size=args.image_size, batch_size=batch,
                          tasks=tasks, size=10**7)
        it = iter(ds.repeat())
        next(it)  # fills the shuffle buffer
        start = time.perf_counter()
        for _ in range(args.pipeline_batches):
            next(it)
        delivered = args.pipeline_batches * batch / (time.perf_counter() - start)
        _timing.figure("gpu/scenes_delivery_over_mixed_xla", delivered / xla, (">=", 1),
                       f"scenes pipeline {delivered:.0f} img/s on {os.cpu_count()} CPUs, mixed+XLA {xla:.0f} img/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
