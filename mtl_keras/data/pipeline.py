"""From unbatched examples to what ``model.fit`` eats: ``(image, targets, sample_weights)``.

Resize, box-aware augmentation (Keras' own ``RandomFlip`` with ``bounding_box_format``), per-task
target encoding with a 0 sample weight where a label is missing, batching and prefetch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_keras.errors import MtlError


def resize_example(example: dict, image_size: int) -> dict:
    """Resize the image (bilinear) and any mask (nearest) to ``image_size`` square.

    Relative boxes need no change. Example:
        >>> import numpy as np
        >>> ex = resize_example({"image": np.zeros((10, 20, 3), "uint8"), "labels": {}}, 8)
        >>> tuple(ex["image"].shape)
        (8, 8, 3)
    """
    image = tf.convert_to_tensor(example["image"])
    labels = dict(example["labels"])
    size = [image_size, image_size]
    if image.shape[:2] != tuple(size):
        image = tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)
        if "mask" in labels:
            mask = tf.convert_to_tensor(labels["mask"])
            labels["mask"] = tf.squeeze(tf.image.resize(mask[..., None], size, method="nearest"), -1)
    return {**example, "image": image, "labels": labels}


class BoxAwareFlip:
    """Random horizontal flip (p=0.5) of image, main box, object boxes and mask together.

    Uses ``keras.layers.RandomFlip(bounding_box_format="rel_yxyx")`` for all of them in one call, then
    puts the -1 padding of missing boxes back (the layer would flip it into ``[0, 2, 0, 2]``).

    Example:
        >>> import numpy as np
        >>> ex = {"image": np.zeros((4, 4, 3), "float32"), "labels": {"box": np.array([0, 0, .5, .25], "float32")}}
        >>> [round(float(v), 2) for v in BoxAwareFlip(seed=0)(ex)["labels"]["box"]] in ([0, 0, .5, .25], [0, .75, .5, 1])
        True
    """

    def __init__(self, seed: int = 0):
        self.layer = keras.layers.RandomFlip("horizontal", bounding_box_format="rel_yxyx", seed=seed)

    def __call__(self, example: dict) -> dict:
        labels = dict(example["labels"])
        inputs = {"images": tf.cast(example["image"], tf.float32)}
        boxes, box_labels = [], []
        if "box" in labels:
            boxes.append(tf.reshape(tf.cast(labels["box"], tf.float32), [1, 4]))
            box_labels.append(tf.where(tf.reduce_all(boxes[-1] >= 0, axis=-1), 0, -1))
        if "objects" in labels:
            boxes.append(tf.cast(labels["objects"]["boxes"], tf.float32))
            box_labels.append(tf.cast(labels["objects"]["labels"], tf.int32))
        if boxes:
            inputs["bounding_boxes"] = {"boxes": tf.concat(boxes, 0), "labels": tf.concat(box_labels, 0)}
        if "mask" in labels:
            inputs["segmentation_masks"] = tf.cast(labels["mask"], tf.float32)[..., None]
        flipped = self.layer(inputs, training=True)
        if boxes:
            valid = (inputs["bounding_boxes"]["labels"] >= 0)[:, None]
            new_boxes = tf.where(valid, flipped["bounding_boxes"]["boxes"], -1.0)
            if "box" in labels:
                labels["box"], new_boxes = new_boxes[0], new_boxes[1:]
            if "objects" in labels:
                labels["objects"] = {"boxes": new_boxes, "labels": labels["objects"]["labels"]}
        if "mask" in labels:
            mask_dtype = tf.convert_to_tensor(labels["mask"]).dtype
            labels["mask"] = tf.cast(tf.round(flipped["segmentation_masks"][..., 0]), mask_dtype)
        return {**example, "image": flipped["images"], "labels": labels}


def encode_targets(example: dict, tasks, image_size: int):
    """``(image, {task: target}, {task: weight})`` for one example; weight 0 marks a missing label."""
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
    ds = ds.map(lambda ex: resize_example(ex, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment and flip_ok:
        flip = BoxAwareFlip(seed=seed)
        ds = ds.map(flip, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda ex: encode_targets(ex, tasks, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)
