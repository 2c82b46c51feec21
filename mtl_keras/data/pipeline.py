"""From unbatched examples to what ``model.fit`` eats: ``(image, targets, sample_weights)``.

Resize, box-aware augmentation (Keras' own ``RandomFlip`` with ``bounding_box_format``), per-task
target encoding with a 0 sample weight where a label is missing, batching and prefetch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_keras import tasks as task_lib
from mtl_keras.errors import MtlError


# The labels of the built-in sources' box, detection, segmentation and depth tasks: what the flip and
# the resize move when they are not told the tasks.
DEFAULT_SPATIAL = {"box": ("box",), "detection": ("objects",), "segmentation": ("mask",), "depth": ("depth",)}


def spatial_labels(tasks=None) -> dict:
    """Which labels move with the pixels, by task kind: ``{"box"|"detection"|"segmentation"|"depth": names}``.

    Args:
        tasks: the tasks whose labels are read (``BoxTask``, ``DetectionTask``, ``SegmentationTask`` and
            ``DepthTask`` and their subclasses are found by type, whatever their names); ``None``: the
            built-in sources' ``box``, ``objects``, ``mask`` and ``depth``.

    Returns:
        A tuple of label names per kind.

    Example:
        >>> from mtl_keras.tasks import BoxTask, SegmentationTask
        >>> spatial_labels([BoxTask("where"), SegmentationTask("parts", classes=["bg", "cat"])])
        {'box': ('where',), 'detection': (), 'segmentation': ('parts',), 'depth': ()}
    """
    if tasks is None:
        return dict(DEFAULT_SPATIAL)
    tasks = list(tasks)
    kinds = {"box": task_lib.BoxTask, "detection": task_lib.DetectionTask, "segmentation": task_lib.SegmentationTask,
             "depth": task_lib.DepthTask}
    return {kind: tuple(t.name for t in tasks if isinstance(t, cls)) for kind, cls in kinds.items()}


def resize_example(example: dict, image_size: int, tasks=None) -> dict:
    """Resize the image (bilinear) and the segmentation masks and depth maps (nearest) to ``image_size`` square.

    Nearest, for depth too: blending would invent depths at object edges and spread the 0 / NaN of
    unmeasured pixels into their neighbours.

    Relative boxes need no change.

    Args:
        example: ``{"image": [H, W, 3], "labels": {name: label}, ...}``.
        image_size: the side of the square output.
        tasks: the tasks whose masks are resized (found by type, ``spatial_labels``); ``None``: ``mask``.

    Returns:
        The example with the image and masks resized.

    Example:
        >>> import numpy as np
        >>> from mtl_keras.tasks import SegmentationTask
        >>> ex = {"image": np.zeros((10, 20, 3), "uint8"), "labels": {"parts": np.zeros((10, 20), "uint8")}}
        >>> out = resize_example(ex, 8, tasks=[SegmentationTask("parts", classes=["bg", "cat"])])
        >>> tuple(out["image"].shape), tuple(out["labels"]["parts"].shape)
        ((8, 8, 3), (8, 8))
    """
    image = tf.convert_to_tensor(example["image"])
    labels = dict(example["labels"])
    size = [image_size, image_size]
    if image.shape[:2] != tuple(size):
        image = tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)
        spatial = spatial_labels(tasks)
        for name in spatial["segmentation"]:
            if name in labels:
                mask = tf.convert_to_tensor(labels[name])
                labels[name] = tf.squeeze(tf.image.resize(mask[..., None], size, method="nearest"), -1)
        for name in spatial.get("depth", ()):
            if name in labels:
                depth = tf.cast(labels[name], tf.float32)
                depth = tf.reshape(depth, tf.shape(depth)[:2])  # [H, W] or [H, W, 1]
                labels[name] = tf.squeeze(tf.image.resize(depth[..., None], size, method="nearest"), -1)
    return {**example, "image": image, "labels": labels}


class BoxAwareFlip:
    """Random horizontal flip (p=0.5) of the image and, with it, its boxes, object boxes and masks.

    Uses ``keras.layers.RandomFlip(bounding_box_format="rel_yxyx")`` for all of them in one call, then
    puts the -1 padding of missing boxes back (the layer would flip it into ``[0, 2, 0, 2]``). The
    labels that move are those of the box, detection and segmentation tasks, found by type
    (``spatial_labels``), so a source may name them as it likes.

    Args:
        seed: the flip's random seed.
        tasks: the tasks of the data (``make_pipeline`` passes them); ``None``: the built-in sources'
            ``box``, ``objects`` and ``mask`` labels.

    Example:
        >>> import numpy as np
        >>> from mtl_keras.tasks import BoxTask
        >>> ex = {"image": np.zeros((4, 4, 3), "float32"), "labels": {"where": np.array([0, 0, .5, .25], "float32")}}
        >>> flip = BoxAwareFlip(seed=0, tasks=[BoxTask("where")])
        >>> [round(float(v), 2) for v in flip(ex)["labels"]["where"]] in ([0, 0, .5, .25], [0, .75, .5, 1])
        True
    """

    def __init__(self, seed: int = 0, tasks=None):
        self.layer = keras.layers.RandomFlip("horizontal", bounding_box_format="rel_yxyx", seed=seed)
        self.spatial = spatial_labels(tasks)

    def __call__(self, example: dict) -> dict:
        labels = dict(example["labels"])
        box_names = [n for n in self.spatial["box"] if n in labels]
        detection_names = [n for n in self.spatial["detection"] if n in labels]
        mask_names = [n for n in self.spatial["segmentation"] if n in labels]
        # Depth maps flip with the masks but keep their fractional values (masks are rounded back).
        depth_names = [n for n in self.spatial.get("depth", ()) if n in labels]
        inputs = {"images": tf.cast(example["image"], tf.float32)}
        boxes, box_labels, counts = [], [], []
        for name in box_names:
            boxes.append(tf.reshape(tf.cast(labels[name], tf.float32), [1, 4]))
            box_labels.append(tf.where(tf.reduce_all(boxes[-1] >= 0, axis=-1), 0, -1))
            counts.append(1)
        for name in detection_names:
            boxes.append(tf.reshape(tf.cast(labels[name]["boxes"], tf.float32), [-1, 4]))
            box_labels.append(tf.cast(labels[name]["labels"], tf.int32))
            counts.append(tf.shape(boxes[-1])[0])
        if boxes:
            inputs["bounding_boxes"] = {"boxes": tf.concat(boxes, 0), "labels": tf.concat(box_labels, 0)}
        if mask_names or depth_names:
            # Several masks flip as the channels of one map.
            masks = [tf.cast(labels[n], tf.float32) for n in mask_names]
            masks += [tf.reshape(tf.cast(labels[n], tf.float32), tf.shape(inputs["images"])[:2]) for n in depth_names]
            inputs["segmentation_masks"] = tf.stack(masks, axis=-1)
        flipped = self.layer(inputs, training=True)
        if boxes:
            valid = (inputs["bounding_boxes"]["labels"] >= 0)[:, None]
            parts = tf.split(tf.where(valid, flipped["bounding_boxes"]["boxes"], -1.0), counts, axis=0)
            for name, part in zip(box_names, parts):
                labels[name] = part[0]
            for name, part in zip(detection_names, parts[len(box_names):]):
                labels[name] = {**labels[name], "boxes": part}
        for i, name in enumerate(mask_names):
            mask_dtype = tf.convert_to_tensor(labels[name]).dtype
            labels[name] = tf.cast(tf.round(flipped["segmentation_masks"][..., i]), mask_dtype)
        for i, name in enumerate(depth_names, start=len(mask_names)):
            labels[name] = flipped["segmentation_masks"][..., i]
        return {**example, "image": flipped["images"], "labels": labels}


def encode_targets(example: dict, tasks, image_size: int):
    """``(image, {task: target}, {task: weight})`` for one example; weight 0 marks a missing label.

    Args:
        example: ``{"image": uint8 HxWx3, "labels": {task: raw label}}`` (optional ``"present"`` mask).
        tasks: the tasks to encode, each by its ``encode``.
        image_size: side of the square model input, in pixels.

    Returns:
        ``(float32 image, {task: target}, {task: weight})``.

    Raises:
        MtlError: the example has no label for one of ``tasks``.
    """
    labels = example["labels"]
    present = example.get("present", {})
    targets, weights = {}, {}
    for task in tasks:
        if task.name not in labels:
            raise MtlError(
                f"the data has no label for task {task.name!r}; labels available: {', '.join(sorted(labels))}"
            )
        target, weight = task.encode(labels[task.name], image_size)
        if task.name in present:
            weight = weight * tf.cast(present[task.name], tf.float32)
        targets[task.name] = target
        weights[task.name] = weight
    return tf.cast(example["image"], tf.float32), targets, weights


def make_pipeline(
    examples: tf.data.Dataset,
    tasks,
    image_size: int,
    batch_size: int,
    training: bool = False,
    augment: bool = True,
    flip_ok: bool = True,
    shuffle_buffer: int = 1024,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batched, prefetched ``(image, targets, weights)`` for ``model.fit`` / ``evaluate``.

    Args:
        examples: a dataset of ``{"image": ..., "labels": {task: raw label}}`` from a source.
        tasks: the tasks whose targets (and presence weights) to encode.
        image_size: side of the square model input.
        batch_size: examples per batch.
        training: shuffle and repeat-free random flips (the train split).
        augment: allow the random flips when ``training``.
        flip_ok: whether the source's labels survive a horizontal flip.
        shuffle_buffer: examples in the shuffle buffer.
        seed: shuffle and flip seed.

    Returns:
        A batched, prefetched ``tf.data.Dataset``.

    Example:
        >>> from mtl_keras.data.scenes import ScenesSource
        >>> src = ScenesSource("shapes")
        >>> ds = make_pipeline(src.examples("val", 32, size=4), [src.tasks()["shape"]], 32, batch_size=2)
        >>> x, y, w = next(iter(ds)); tuple(x.shape), sorted(y)
        ((2, 32, 32, 3), ['shape'])
    """
    if batch_size < 1:
        raise MtlError(f"batch size must be at least 1, got {batch_size}")
    # Here, not only in encode_targets: an error raised while tf.data traces a map arrives wrapped in
    # autograph's StagingError with a traceback instead of the one-line message.
    spec = examples.element_spec
    labels = spec.get("labels", {}) if isinstance(spec, dict) else {}
    missing = [t.name for t in tasks if t.name not in labels]
    if missing:
        raise MtlError(
            f"the data has no label for task {missing[0]!r}; labels available: {', '.join(sorted(labels))}"
        )
    ds = examples
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda ex: resize_example(ex, image_size, tasks), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment and flip_ok:
        flip = BoxAwareFlip(seed=seed, tasks=tasks)
        ds = ds.map(flip, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda ex: encode_targets(ex, tasks, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)
