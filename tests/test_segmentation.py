"""Segmentation: mask encoding with unlabelled/ignored pixels, MeanIoU on known inputs, masked loss."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import jaccard_score

import mtl_keras as mk
from demo import scenes
from mtl_keras.errors import MtlError
from mtl_keras.tasks import SegmentationTask
from mtl_keras.tasks.segmentation import MaskMeanIoU

CLASSES = ["background", "pet", "border"]


def _probs(pred, k):
    return np.eye(k, dtype=np.float32)[pred] * 0.8 + 0.2 / k


@pytest.fixture(scope="module")
def known():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (2, 16, 16)).astype(np.int32)
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 3, truth.shape))
    return truth, pred


def test_mean_iou_matches_an_independent_count(known):
    truth, pred = known
    task = SegmentationTask("mask", classes=CLASSES)
    (metric,) = task.metrics()
    metric.update_state(truth, _probs(pred, 3), np.ones(truth.shape, np.float32))
    expected = jaccard_score(truth.ravel(), pred.ravel(), average="macro")
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
    assert float(metric.result()) < 1.0
    perfect = MaskMeanIoU(num_classes=3)
    perfect.update_state(truth, _probs(truth, 3))
    assert float(perfect.result()) == pytest.approx(1.0)


def test_ignored_and_unlabelled_pixels_leave_loss_and_metric(known):
    truth, pred = known
    task = SegmentationTask("mask", classes=CLASSES, ignore_class="border")
    label = truth[0].astype(np.uint8).copy()
    label[:4] = 255  # an unlabelled strip
    target, weight = task.encode(label, 16)
    target, weight = target.numpy(), weight.numpy()
    assert np.all(weight[:4] == 0) and np.all(weight[label == 2] == 0)
    assert np.all(weight[(label < 2)] == 1) and np.all(target[4:] == label[4:])

    keep = weight > 0
    (metric,) = task.metrics()
    metric.update_state(target[None], _probs(pred[:1], 3), weight[None])
    expected = jaccard_score(target[keep], pred[0][keep], average="macro")
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)

    probs = _probs(pred[:1], 3)
    loss = float(task.loss()(target[None], probs, weight[None]))
    picked = probs[0][np.arange(16)[:, None], np.arange(16)[None, :], target]
    assert loss == pytest.approx(float(np.mean(-np.log(picked[keep]))), rel=1e-5)


def test_out_of_range_mask_values_fail_loudly():
    task = SegmentationTask("mask", classes=CLASSES)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask value out of range"):
        task.encode(np.full((4, 4), 7, np.uint8), 4)


def test_decode_gives_argmax_mask_and_areas(known):
    truth, _ = known
    task = SegmentationTask("mask", classes=CLASSES)
    out = task.decode(_probs(truth[0], 3))
    assert np.array_equal(np.array(out["mask"]), truth[0])
    fractions = {c: float(np.mean(truth[0] == i)) for i, c in enumerate(CLASSES)}
    assert out["areas"] == {c: pytest.approx(f, abs=1e-4) for c, f in fractions.items()}
    assert list(out["areas"]) == sorted(fractions, key=fractions.get, reverse=True)


def test_bad_settings_are_clear_errors():
    with pytest.raises(MtlError, match="ignore class .*'edge'; available: background, border, pet"):
        SegmentationTask("mask", classes=CLASSES, ignore_class="edge")
    with pytest.raises(MtlError, match="at least 2 classes"):
        SegmentationTask("mask", classes=["background"])


def test_scenes_masks_reach_the_model_at_input_resolution():
    tasks = mk.data.tasks_for("shapes", names=["mask"])
    assert tasks[0].classes == ["background", *scenes.SHAPES]
    ds = mk.data.load("shapes", "val", image_size=64, batch_size=2, size=2, tasks=tasks)
    _, y, w = next(iter(ds))
    rendered = scenes.render_scene(seed=0, split="val", index=0, image_size=64).labels["mask"]
    np.testing.assert_array_equal(y["mask"][0].numpy(), rendered)
    assert float(tf.reduce_min(w["mask"])) == 1.0  # every scene pixel is labelled
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=64)
    out = model(np.zeros((1, 64, 64, 3), np.float32))["mask"]
    assert tuple(out.shape) == (1, 64, 64, 7) and out.dtype == "float32"
    np.testing.assert_allclose(np.sum(out, axis=-1), 1.0, rtol=1e-5)
