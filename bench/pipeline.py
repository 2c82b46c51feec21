"""Does the input pipeline keep up? Images/s it delivers ÷ images/s a train step consumes.

Figures (measured side by side in this one run, rounds interleaved):
  pipeline/scenes_delivery_over_step     built-in scenes (render + resize + flip + targets + batch) ÷ train step
                                         (target >= 5)
  pipeline/jpeg_records_delivery_over_step  tfds-style path: TFRecord of JPEG bytes -> parse -> decode_jpeg ->
                                         the same resize/flip/targets/batch ÷ train step (target >= 5)
  pipeline/fit_from_scenes_over_step     images/s of ``model.fit`` reading the scenes pipeline (ThroughputLogger,
                                         steady epochs) ÷ the train step on a fixed in-memory batch: what sharing
                                         the CPU with the pipeline costs training (1.0 = nothing; target >= 0.95)

The train step is the main job's model (``make demo``: shape, color, objects, mask on one ResNet50 at
64 px, batch 16), on one fixed batch (no input work at all). The
pipelines are read on their own, from iterators kept open across rounds (so the shuffle buffer is
filled once); each round first takes ``--drain`` batches untimed, the ones its buffers refilled with
while the other variants ran. The JPEG records are written once to a temporary directory (images rendered at
``--source-size`` px, as a camera or a tfds dataset would store them, and resized in the pipeline), with
every label the tasks read: class labels, the boxes, and the mask as a PNG (as segmentation datasets store it).
Nothing is downloaded.

Run from the repository root:  python bench/pipeline.py [--tasks shape,color,present,box,count --batch-size 32]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _timing  # noqa: E402  (sets TF logging before TensorFlow loads)

DEFAULT_TASKS = "shape,color,objects,mask"  # the main job's (Makefile, demo)
MAX_OBJECTS = 3  # objects per scene, as the built-in source renders them (the records' box padding)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trunk", default="resnet50")
    p.add_argument("--tasks", default=DEFAULT_TASKS)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=16, help="batches pulled from a pipeline per round")
    p.add_argument("--drain", type=int, default=24, help="untimed batches taken before each pipeline round")
    p.add_argument("--steps", type=int, default=3, help="train steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--source-size", type=int, default=256, help="side of the stored JPEGs")
    p.add_argument("--records", type=int, default=256, help="JPEG records written (read repeatedly)")
    p.add_argument("--no-fit", action="store_true", help="skip the model.fit-from-pipeline figure")
    return p.parse_args(argv)


def write_jpeg_records(path, n, source_size):
    """Render ``n`` scenes, store them as tf.train.Example records with JPEG bytes (tfds' layout)."""
    import tensorflow as tf
    from PIL import Image

    from demo.scenes import render_scene

    def feature(values, kind):
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "int":
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    with tf.io.TFRecordWriter(path) as writer:
        for i in range(n):
            scene = render_scene(seed=0, split="train", index=i, image_size=source_size, max_objects=MAX_OBJECTS)
            buf = io.BytesIO()
            Image.fromarray(scene.image).save(buf, format="JPEG", quality=90)
            lab = scene.labels
            mask = io.BytesIO()
            Image.fromarray(lab["mask"]).save(mask, format="PNG")
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": feature([buf.getvalue()], "bytes"),
                "shape": feature([int(lab["shape"])], "int"),
                "color": feature([int(lab["color"])], "int"),
                "present": feature([float(v) for v in lab["present"]], "float"),
                "box": feature([float(v) for v in lab["box"]], "float"),
                "count": feature([float(lab["count"])], "float"),
                "objects/boxes": feature([float(v) for v in lab["objects"]["boxes"].ravel()], "float"),
                "objects/labels": feature([int(v) for v in lab["objects"]["labels"]], "int"),
                "mask": feature([mask.getvalue()], "bytes"),
            }))
            writer.write(example.SerializeToString())


def jpeg_examples(path, num_classes, max_objects):
    """Unbatched ``{"image", "labels"}`` examples decoded from the JPEG records, repeated forever."""
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "shape": tf.io.FixedLenFeature([], tf.int64),
        "color": tf.io.FixedLenFeature([], tf.int64),
        "present": tf.io.FixedLenFeature([num_classes], tf.float32),
        "box": tf.io.FixedLenFeature([4], tf.float32),
        "count": tf.io.FixedLenFeature([], tf.float32),
        "objects/boxes": tf.io.FixedLenFeature([max_objects * 4], tf.float32),
        "objects/labels": tf.io.FixedLenFeature([max_objects], tf.int64),
        "mask": tf.io.FixedLenFeature([], tf.string),
    }

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        image = tf.io.decode_jpeg(ex.pop("image"), channels=3)
        mask = tf.io.decode_png(ex.pop("mask"), channels=1)[..., 0]
        objects = {"boxes": tf.reshape(ex.pop("objects/boxes"), [max_objects, 4]),
                   "labels": tf.cast(ex.pop("objects/labels"), tf.int32)}
        labels = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in ex.items()}
        return {"image": image, "labels": {**labels, "objects": objects, "mask": mask}}

    return tf.data.TFRecordDataset(path).repeat().map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def main():
    args = parse_args()
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    _timing.header(f"input pipeline vs train step: {len(names)}-task {args.trunk}, {args.image_size} px, "
                   f"batch {args.batch_size}")
    import warnings

    import mtl_keras as mk
    from mtl_keras.data.pipeline import make_pipeline
    from mtl_keras.train.callbacks import ThroughputLogger

    # The pipeline shuffles; Keras' reminder that fit(shuffle=True) does not apply to a Dataset is noise.
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")

    tasks = mk.data.tasks_for("shapes", names=names)
    scenes = mk.data.load("shapes", split="train", image_size=args.image_size, batch_size=args.batch_size,
                          tasks=tasks, size=10**7)
    x, y, w = next(iter(scenes))

    tmp = tempfile.mkdtemp(prefix="mtl_bench_")
    records = os.path.join(tmp, "scenes.tfrecord")
    start = time.perf_counter()
    write_jpeg_records(records, args.records, args.source_size)
    mb = os.path.getsize(records) / 1e6
    print(f"# wrote {args.records} JPEG records ({args.source_size} px, {mb:.1f} MB) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    num_classes = len(tasks[names.index("shape")].classes) if "shape" in names else 6
    jpeg = make_pipeline(jpeg_examples(records, num_classes, MAX_OBJECTS), tasks, args.image_size, args.batch_size,
                         training=True, flip_ok=True)

    model = mk.build_model(tasks, trunk=args.trunk, image_size=args.image_size, weights=None)
    model.compile(optimizer="adam")
    iterators = {"scenes": iter(scenes.repeat()), "jpeg": iter(jpeg)}

    def pull(it):
        def run():
            # While the other variants ran, this pipeline refilled its prefetch/map buffers (up to
            # ~20 batches here); taking those out untimed leaves only what it produces now.
            for _ in range(args.drain):
                next(it)
            start = time.perf_counter()
            for _ in range(args.batches):
                next(it)
            return time.perf_counter() - start
        return run

    def train():
        for _ in range(args.steps):
            model.train_on_batch(x, y, sample_weight=w)

    measured = {name: [] for name in iterators}

    def record(name, run):
        return lambda: measured[name].append(run())

    fns = {"step": train, **{name: record(name, pull(it)) for name, it in iterators.items()}}
    # Warm-up: traces the train step, fills each shuffle buffer.
    times = _timing.interleaved(fns, rounds=args.rounds, warmup=1)
    # The pipeline rounds time themselves (after draining); their return value is the figure.
    for name in iterators:
        times[name] = measured[name][1:]  # [0] was the warm-up call
    rate = {
        "step": args.steps * args.batch_size / _timing.median(times["step"]),
        "scenes": args.batches * args.batch_size / _timing.median(times["scenes"]),
        "jpeg": args.batches * args.batch_size / _timing.median(times["jpeg"]),
    }
    _timing.figure(
        "pipeline/scenes_delivery_over_step", rate["scenes"] / rate["step"], (">=", 5),
        f"scenes pipeline {rate['scenes']:.0f} img/s, train step {rate['step']:.1f} img/s",
    )
    _timing.figure(
        "pipeline/jpeg_records_delivery_over_step", rate["jpeg"] / rate["step"], (">=", 5),
        f"JPEG records ({args.source_size} px -> {args.image_size} px) {rate['jpeg']:.0f} img/s, "
        f"train step {rate['step']:.1f} img/s",
    )
    if args.no_fit:
        return 0
    # fit through the real pipeline: epoch 1 traces fit's function, later epochs are steady.
    logger = ThroughputLogger(args.batch_size, verbose=0)
    steps = args.steps * 2
    model.fit(scenes.repeat(), steps_per_epoch=steps, epochs=3, verbose=0, callbacks=[logger])
    step_again = args.steps * args.batch_size / _timing.median(_timing.interleaved({"s": train}, 2, 0)["s"])
    fit_rate = _timing.median(logger.history[1:])
    step_rate = (rate["step"] + step_again) / 2
    _timing.figure(
        "pipeline/fit_from_scenes_over_step", fit_rate / step_rate, (">=", 0.95),
        f"fit from the scenes pipeline {fit_rate:.1f} img/s (epochs {', '.join(f'{r:.1f}' for r in logger.history)}), "
        f"train step alone {step_rate:.1f} img/s (before/after {rate['step']:.1f}/{step_again:.1f})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
