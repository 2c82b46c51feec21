"""tf.data pipeline: resize, box-aware flip, target encoding and missing-label weights."""

import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.data.pipeline import BoxAwareFlip, encode_targets, resize_example
from mtl_keras.errors import MtlError


def _example(index=3, size=64):
    src = mk.data.get_source("shapes")
    return next(iter(src.examples("val", size, size=index + 1).skip(index)))


def _tight_box(mask, cls):
    rows, cols = np.nonzero(np.asarray(mask) == cls + 1)
    return rows, cols


def test_flip_moves_boxes_with_the_pixels():
    ex = _example()
    flip = BoxAwareFlip(seed=1)
    flipped_any = False
    for _ in range(6):
        out = flip(ex)
        img, box = np.asarray(out["image"]), np.asarray(out["labels"]["box"])
        was = np.array_equal(img, np.asarray(ex["image"], np.float32))
        mirrored = np.array_equal(img, np.asarray(ex["image"], np.float32)[:, ::-1])
        assert was or mirrored
        if mirrored:
            flipped_any = True
            b = np.asarray(ex["labels"]["box"])
            np.testing.assert_allclose(box, [b[0], 1 - b[3], b[2], 1 - b[1]], atol=1e-6)
            np.testing.assert_array_equal(np.asarray(out["labels"]["mask"]), np.asarray(ex["labels"]["mask"])[:, ::-1])
        # Padding stays padding.
        labels = np.asarray(out["labels"]["objects"]["labels"])
        assert np.all(np.asarray(out["labels"]["objects"]["boxes"])[labels < 0] == -1)
    assert flipped_any


def _renamed(ex, names):
    return {**ex, "labels": {names.get(k, k): v for k, v in ex["labels"].items()}}


def test_flip_finds_box_detection_and_mask_labels_by_task_type_not_name():
    # A source whose box, detection and segmentation tasks are called where/things/parts.
    shapes = {t.name: t for t in mk.data.tasks_for("shapes", names=["box", "objects", "mask"])}
    names = {"box": "where", "objects": "things", "mask": "parts"}
    tasks = [mk.tasks.from_config({**shapes[old].get_config(), "name": new}) for old, new in names.items()]
    ex = _renamed(_example(), names)
    flip = BoxAwareFlip(seed=1, tasks=tasks)
    mirrored_any = False
    for _ in range(6):
        out = flip(ex)
        img = np.asarray(out["image"])
        if np.array_equal(img, np.asarray(ex["image"], np.float32)):
            np.testing.assert_allclose(out["labels"]["where"], ex["labels"]["where"], atol=1e-6)
            continue
        np.testing.assert_array_equal(img, np.asarray(ex["image"], np.float32)[:, ::-1])
        mirrored_any = True
        b = np.asarray(ex["labels"]["where"])
        np.testing.assert_allclose(out["labels"]["where"], [b[0], 1 - b[3], b[2], 1 - b[1]], atol=1e-6)
        np.testing.assert_array_equal(np.asarray(out["labels"]["parts"]), np.asarray(ex["labels"]["parts"])[:, ::-1])
        boxes, valid = np.asarray(ex["labels"]["things"]["boxes"]), np.asarray(ex["labels"]["things"]["labels"]) >= 0
        got = np.asarray(out["labels"]["things"]["boxes"])
        assert valid.any()
        np.testing.assert_allclose(got[valid][:, [1, 3]], 1 - boxes[valid][:, [3, 1]], atol=1e-6)
        assert np.all(got[~valid] == -1)
    assert mirrored_any


def test_training_pipeline_flips_the_targets_of_renamed_tasks_with_the_image():
    shapes = {t.name: t for t in mk.data.tasks_for("shapes", names=["box", "mask"])}
    names = {"box": "where", "mask": "parts"}
    tasks = [mk.tasks.from_config({**shapes[old].get_config(), "name": new}) for old, new in names.items()]
    ex = _renamed(_example(size=32), names)
    examples = tf.data.Dataset.from_tensors(ex).repeat(8)
    ds = mk.data.make_pipeline(examples, tasks, 32, batch_size=1, training=True, seed=3)
    image = np.asarray(ex["image"], np.float32)
    b = np.asarray(ex["labels"]["where"])
    seen = set()
    for x, y, _ in ds:
        x = x.numpy()[0]
        mirrored = not np.array_equal(x, image)
        if mirrored:
            np.testing.assert_array_equal(x, image[:, ::-1])
        seen.add(mirrored)
        box = [b[0], 1 - b[3], b[2], 1 - b[1]] if mirrored else b
        np.testing.assert_allclose(y["where"].numpy()[0], box, atol=1e-6)
        mask = np.asarray(ex["labels"]["parts"])
        np.testing.assert_array_equal(y["parts"].numpy()[0], mask[:, ::-1] if mirrored else mask)
    assert seen == {True, False}


def test_resize_keeps_relative_boxes_and_nearest_masks():
    ex = _example(size=64)
    small = resize_example(ex, 32)
    assert tuple(small["image"].shape) == (32, 32, 3)
    assert set(np.unique(small["labels"]["mask"])) <= set(np.unique(ex["labels"]["mask"]))
    np.testing.assert_array_equal(small["labels"]["box"], ex["labels"]["box"])


def test_missing_labels_get_zero_weight():
    tasks = mk.data.tasks_for("shapes", names=["shape", "present", "box", "count"])
    ex = {
        "image": tf.zeros((32, 32, 3), tf.uint8),
        "labels": {"shape": tf.constant(-1), "present": -tf.ones(6), "box": -tf.ones(4), "count": tf.constant(2.0)},
        "present": {"count": tf.constant(False)},
    }
    _, y, w = encode_targets(ex, tasks, 32)
    assert {k: float(v) for k, v in w.items()} == {"shape": 0.0, "present": 0.0, "box": 0.0, "count": 0.0}
    assert int(y["shape"]) == 0 and np.all(np.isfinite(y["box"]))
    ex["labels"] = {"shape": tf.constant(2), "present": tf.ones(6), "box": tf.constant([0.1, 0.1, 0.5, 0.5]), "count": tf.constant(1.0)}
    ex["present"] = {}
    _, y, w = encode_targets(ex, tasks, 32)
    assert all(float(v) == 1.0 for v in w.values()) and int(y["shape"]) == 2


def test_load_yields_batched_targets_and_weights_per_task():
    tasks = mk.data.tasks_for("shapes", names=["shape", "box"])
    train, test = mk.data.load("shapes", split=["train", "test"], image_size=32, batch_size=4, size=8, tasks=tasks)
    x, y, w = next(iter(test))
    assert x.shape == (4, 32, 32, 3) and x.dtype == tf.float32
    assert sorted(y) == sorted(w) == ["box", "shape"]
    assert float(tf.reduce_max(x)) > 1.0  # pixels stay in 0..255; the model preprocesses
    # Validation/test data are not shuffled: two passes agree.
    a = np.concatenate([b[0].numpy() for b in test])
    b = np.concatenate([b[0].numpy() for b in test])
    np.testing.assert_array_equal(a, b)
    assert sum(1 for _ in train) == 2


def test_digits_are_never_flipped():
    assert mk.data.get_source("digits").flip_ok is False
    assert mk.data.get_source("shapes").flip_ok is True


@pytest.mark.parametrize(
    "kwargs, message",
    [({"name": "cifar"}, "unknown dataset"), ({"split": "dev"}, "unknown split"),
     ({"image_size": 8}, "at least 16"), ({"batch_size": 0}, "batch size"), ({"size": 0}, "would be empty")],
)
def test_bad_load_arguments(kwargs, message):
    args = {"name": "shapes", "split": "val", "image_size": 32, "batch_size": 2, "size": 2, **kwargs}
    with pytest.raises(MtlError, match=message):
        mk.data.load(**args)
