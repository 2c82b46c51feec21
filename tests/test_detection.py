"""Detection: heatmap encoding and decoding, CenterNet loss, COCO mAP, and a model with both dense heads."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from demo import scenes
from demo.decoding import decode_detections, local_peaks
from mtl_keras.errors import MtlError
from mtl_keras.evaluate.metrics import evaluate_model
from mtl_keras.tasks import DetectionTask
from mtl_keras.tasks.box import box_iou
from mtl_keras.tasks.detection import CenterNetLoss, targets_to_boxes

SIZE = 64
CLASSES = list(scenes.SHAPES)


@pytest.fixture(scope="module")
def task():
    return DetectionTask("objects", classes=CLASSES, max_objects=3)


@pytest.fixture(scope="module")
def encoded(task):
    """Encoded targets and the true boxes of 24 rendered scenes."""
    targets, truth = [], []
    for i in range(24):
        objects = scenes.render_scene(seed=5, split="val", index=i, image_size=SIZE).labels["objects"]
        target, weight = task.encode(objects, SIZE)
        assert float(weight) == 1.0
        targets.append(target.numpy())
        keep = objects["labels"] >= 0
        truth.append((objects["boxes"][keep], objects["labels"][keep]))
    return np.stack(targets), truth


def _match(pred_boxes, pred_classes, true_boxes, true_classes):
    """Best IoU of each true box among predictions of the same class."""
    best = []
    for box, k in zip(true_boxes, true_classes):
        same = pred_boxes[pred_classes == k]
        best.append(float(np.max(box_iou(np.repeat(box[None], len(same), 0), same))) if len(same) else 0.0)
    return np.array(best)


def test_encode_then_decode_recovers_every_box(task, encoded):
    targets, truth = encoded
    c = len(CLASSES)
    for target, (boxes, labels) in zip(targets, truth):
        heat = target[..., :c]
        assert heat.max() == 1.0 and heat.min() >= 0.0
        assert int(target[..., c + 4].sum()) == len(boxes)  # one centre cell per object
        det = decode_detections(target[..., : c + 4], c, score_threshold=0.5)
        assert len(det["boxes"]) == len(boxes)
        assert np.all(_match(det["boxes"], det["classes"], boxes, labels) > 0.9)
        # The task's JSON decoding goes through the same numpy code.
        decoded = task.decode(target[..., : c + 4])["objects"]
        assert sorted(o["label"] for o in decoded) == sorted(CLASSES[k] for k in labels)


def test_targets_store_the_ground_truth_boxes(encoded):
    targets, truth = encoded
    for target, (boxes, labels) in zip(targets, truth):
        got_boxes, got_classes = targets_to_boxes(target, len(CLASSES))
        assert sorted(got_classes.tolist()) == sorted(labels.tolist())
        assert np.all(_match(got_boxes, got_classes, boxes, labels) > 0.999)


def test_padding_invalid_boxes_and_empty_images(task):
    c = len(CLASSES)
    label = {
        "boxes": np.array([[0.1, 0.1, 0.4, 0.5], [-1, -1, -1, -1], [0.5, 0.5, 0.5, 0.9]], np.float32),
        "labels": np.array([2, -1, 1], np.int32),  # the third box has no height
    }
    target, _ = task.encode(label, SIZE)
    assert target.shape == (SIZE // 4, SIZE // 4, c + 5)
    assert int(target[..., c + 4].numpy().sum()) == 1
    assert float(tf.reduce_max(target[..., 1])) == 0.0 and float(tf.reduce_max(target[..., 2])) == 1.0
    empty, weight = task.encode({"boxes": -np.ones((3, 4), np.float32), "labels": -np.ones(3, np.int32)}, SIZE)
    assert float(tf.reduce_max(empty)) == 0.0 and float(weight) == 1.0  # a valid all-background image


@pytest.mark.parametrize("labels, boxes, words", [
    ([len(CLASSES), -1], [[0.1, 0.1, 0.4, 0.5], [-1, -1, -1, -1]], [f"0..{len(CLASSES) - 1}", "-1 for padding"]),
    ([-3, 0], [[0.1, 0.1, 0.4, 0.5], [0.2, 0.2, 0.3, 0.3]], [f"0..{len(CLASSES) - 1}"]),
    ([0, 1], [[0.1, 0.1, 0.4, np.nan], [0.2, 0.2, 0.3, 0.3]], ["finite rel_yxyx"]),
])
def test_bad_object_labels_stop_with_the_task_named_instead_of_being_dropped(task, labels, boxes, words):
    # Dropping an object whose class is past the last one would teach "background" where it stands.
    label = {"boxes": np.array(boxes, np.float32), "labels": np.array(labels, np.int32)}
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        task.encode(label, SIZE)
    assert "task 'objects'" in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_perfect_prediction_scores_map_one_and_a_shifted_one_less(task, encoded):
    targets, _ = encoded
    c = len(CLASSES)
    perfect = targets[..., : c + 4]
    weights = np.ones(len(targets), np.float32)
    assert task.dataset_metrics(targets, perfect, weights) == {"map": 1.0, "map50": 1.0}
    shifted = np.roll(perfect, 1, axis=2)  # every centre one cell (4 px of 64) to the right
    moved = task.dataset_metrics(targets, shifted, weights)
    # One cell keeps every box above IoU 0.5 but not above the stricter COCO thresholds.
    assert moved["map"] < 0.9 and moved["map50"] == 1.0
    far = task.dataset_metrics(targets, np.roll(perfect, 2, axis=2), weights)  # two cells: most fall below 0.5
    assert far["map50"] < 0.6 and far["map"] < moved["map"]
    wrong_class = np.concatenate([np.roll(perfect[..., :c], 1, axis=-1), perfect[..., c:]], axis=-1)
    assert task.dataset_metrics(targets, wrong_class, weights)["map50"] == 0.0
    # Images with weight 0 (no label) are left out: only the perfect half is scored.
    half = np.concatenate([perfect[:12], wrong_class[12:]])
    assert task.dataset_metrics(targets, half, np.r_[np.ones(12), np.zeros(12)])["map"] == 1.0


def test_decoding_keeps_peaks_top_k_and_threshold():
    heat = np.zeros((8, 8, 2), np.float32)
    heat[2, 2, 0], heat[2, 3, 0], heat[6, 6, 1], heat[0, 7, 1] = 0.9, 0.5, 0.7, 0.2
    assert local_peaks(heat)[2, 2, 0] and not local_peaks(heat)[2, 3, 0]
    out = np.concatenate([heat, np.full((8, 8, 4), 0.5, np.float32)], axis=-1)
    det = decode_detections(out, 2, score_threshold=0.3)
    assert det["scores"].tolist() == pytest.approx([0.9, 0.7]) and det["classes"].tolist() == [0, 1]
    assert len(decode_detections(out, 2, score_threshold=0.0, top_k=1)["boxes"]) == 1
    with pytest.raises(ValueError, match="must be"):
        decode_detections(out, 3)


@pytest.mark.parametrize("variant", ["focal", "penalty_reduced"])
def test_loss_prefers_the_truth_and_honours_sample_weights(encoded, variant):
    targets, _ = encoded
    c = len(CLASSES)
    loss = CenterNetLoss(num_classes=c, heatmap_loss=variant)
    perfect = targets[:4, ..., : c + 4]
    blurred = 0.5 * perfect + 0.25
    assert float(loss(targets[:4], perfect)) < float(loss(targets[:4], blurred))
    mixed = np.concatenate([perfect[:2], blurred[2:]])
    only_perfect = loss(targets[:4], mixed, sample_weight=np.array([1, 1, 0, 0], np.float32))
    assert float(only_perfect) == pytest.approx(float(loss(targets[:2], perfect[:2])), rel=1e-5)


def test_bad_settings_are_clear_errors(task):
    with pytest.raises(MtlError, match="available: focal, penalty_reduced"):
        DetectionTask("objects", classes=["a"], heatmap_loss="dice")
    with pytest.raises(MtlError, match="multiple of 4"):
        task.encode({"boxes": np.zeros((1, 4)), "labels": np.zeros(1)}, 30)
    with pytest.raises(MtlError, match="'boxes', 'labels'"):
        task.encode(np.zeros(4), SIZE)


def test_flip_moves_objects_with_the_image():
    from mtl_keras.data.pipeline import BoxAwareFlip

    s = scenes.render_scene(seed=1, split="val", index=0, image_size=SIZE)
    labels = {"objects": s.labels["objects"], "mask": s.labels["mask"]}
    flip = BoxAwareFlip(seed=0)
    for _ in range(8):  # p = 0.5 per call
        out = flip({"image": s.image, "labels": labels})
        if not np.array_equal(out["image"].numpy(), s.image.astype(np.float32)):
            break
    boxes, flipped = s.labels["objects"]["boxes"], out["labels"]["objects"]["boxes"].numpy()
    valid = s.labels["objects"]["labels"] >= 0
    np.testing.assert_allclose(flipped[valid][:, [1, 3]], 1 - boxes[valid][:, [3, 1]], atol=1e-6)
    assert np.all(flipped[~valid] == -1)
    np.testing.assert_array_equal(out["labels"]["mask"].numpy(), s.labels["mask"][:, ::-1])


# ----- a model with both dense heads ---------------------------------------------------------------
DENSE_NAMES = ["shape", "box", "objects", "mask"]


@pytest.fixture(scope="module")
def dense_model():
    tasks = mk.data.tasks_for("shapes", names=DENSE_NAMES)
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=SIZE)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    return model


@pytest.fixture(scope="module")
def dense_data(dense_model):
    train = mk.data.load("shapes", "train", image_size=SIZE, batch_size=8, size=48, tasks=dense_model.tasks)
    val = mk.data.load("shapes", "val", image_size=SIZE, batch_size=8, size=16, tasks=dense_model.tasks)
    return train, val


def test_both_dense_heads_share_one_fpn_and_have_dense_outputs(dense_model):
    single = mk.build_model(mk.data.tasks_for("shapes", names=["mask"]), trunk="mobilenet_v3_small", image_size=SIZE)
    fpn = lambda m: sorted(l.name for l in m.layers if l.name.startswith("fpn_"))  # noqa: E731
    assert fpn(dense_model) == fpn(single) and fpn(single)
    shapes = {k: tuple(v.shape) for k, v in dense_model.output.items()}
    assert shapes["objects"] == (None, SIZE // 4, SIZE // 4, len(CLASSES) + 4)
    assert shapes["mask"] == (None, SIZE, SIZE, len(CLASSES) + 1)
    assert dense_model.output["objects"].dtype == "float32"


def test_short_fit_lowers_dense_losses_and_save_load_is_exact(dense_model, dense_data, tmp_path_factory):
    train, val = dense_data
    history = dense_model.fit(train, epochs=4, verbose=0).history
    for name in ("objects", "mask"):
        assert history[f"{name}_loss"][-1] < 0.8 * history[f"{name}_loss"][0], (name, history[f"{name}_loss"])
    results = evaluate_model(dense_model, val)
    assert 0.0 <= results["objects"]["map"] <= results["objects"]["map50"] <= 1.0
    assert 0.0 <= results["mask"]["miou"] <= 1.0

    path = tmp_path_factory.mktemp("dense") / "dense.keras"
    dense_model.save(path)
    loaded = mk.load_model(path, safe_mode=True)
    x = next(iter(val))[0]
    before, after = dense_model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for name in DENSE_NAMES:
        np.testing.assert_array_equal(before[name], after[name])
    assert loaded.task("objects") == dense_model.task("objects")
    assert loaded.task("mask") == dense_model.task("mask")


def test_dense_heads_export_to_builtin_tflite_ops_with_parity(dense_model, dense_data):
    from ai_edge_litert.interpreter import Interpreter

    from export.convert import SavedModel, builtin_ops, convert

    with SavedModel(dense_model) as saved:
        flat = convert(saved, "fp32")
    ops = builtin_ops(flat)  # raises on Flex/custom ops
    assert {"CONV_2D", "LOGISTIC", "SOFTMAX", "RESIZE_BILINEAR"} <= set(ops)
    x = next(iter(dense_data[1]))[0][:1].numpy()
    runner = Interpreter(model_content=flat).get_signature_runner("serving_default")
    lite = runner(image=x)
    keras_out = dense_model.predict(x, verbose=0)
    for name in ("objects", "mask"):
        np.testing.assert_allclose(lite[name], keras_out[name], atol=1e-4)
    # The device decodes LiteRT outputs with the same numpy code the library uses.
    decoded = dense_model.task("objects").decode(lite["objects"][0])["objects"]
    for obj in decoded:
        y1, x1, y2, x2 = obj["box_rel_yxyx"]
        assert obj["label"] in CLASSES and 0 <= y1 <= y2 <= 1 and 0 <= x1 <= x2 <= 1


def test_heads_that_read_the_detector_export_to_builtin_tflite_ops_with_parity():
    # The main job's wiring (make demo): shape and color read the detector's main object, the mask its map.
    from ai_edge_litert.interpreter import Interpreter

    from export.convert import SavedModel, builtin_ops, convert

    tasks = mk.data.tasks_for("shapes", names=["shape", "color", "objects", "mask"])
    for t in tasks:
        if t.name != "objects":
            t.depends_on = ("objects",)
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=SIZE)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    # A few steps, so BatchNorm's statistics are real and the outputs are not constants.
    model.fit(mk.data.load("shapes", "train", image_size=SIZE, batch_size=8, size=32, tasks=tasks), verbose=0)
    with SavedModel(model) as saved:
        flat = convert(saved, "fp32")
    builtin_ops(flat)  # raises on Flex/custom ops (a strided slice that adds an axis once did)
    x = next(iter(mk.data.load("shapes", "val", image_size=SIZE, batch_size=4, size=4, tasks=tasks)))[0].numpy()
    runner = Interpreter(model_content=flat).get_signature_runner("serving_default")
    keras_out = model.predict(x, verbose=0)
    for i in range(len(x)):
        lite = runner(image=x[i : i + 1])
        for name in ("shape", "color", "objects", "mask"):
            np.testing.assert_allclose(lite[name][0], keras_out[name][i], atol=1e-4, err_msg=name)
