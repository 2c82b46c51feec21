"""Any tfds image dataset by its features (``mtl_keras.data.tfds_features``), on ``tfds.testing.mock_data``.

Each dataset here has no adapter: its tasks, their classes and the encoded targets come from the
builder's ``info.features`` alone, and are checked against the raw mock examples.
"""

import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import mtl_keras as mk
from mtl_keras.data.tfds import TfdsSource
from mtl_keras.data.tfds_features import IDENTIFIER, map_features
from mtl_keras.errors import MtlError
from mtl_keras.tasks import TASK_TYPES

SIZE = 32
N = 4


@pytest.fixture
def mock():
    with tfds.testing.mock_data(num_examples=N):
        yield


def _raw(name):
    """The mock examples in the order the source reads its (unshuffled) val split."""
    return list(tfds.as_numpy(tfds.load(name, split="validation").take(N)))


def _batch(name, **options):
    ds = mk.data.load(f"tfds:{name}", split="val", image_size=SIZE, batch_size=N, size=N, **options)
    x, y, w = next(iter(ds))
    return x.numpy(), {k: v.numpy() for k, v in y.items()}, {k: v.numpy() for k, v in w.items()}


def _kinds(source):
    return {name: task.kind for name, task in source.tasks().items()}


def _valid(boxes):
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def test_celeb_a_attributes_are_a_multilabel_landmarks_a_regression_identity_skipped(mock):
    src = mk.data.get_source("tfds:celeb_a")
    features = tfds.builder("celeb_a").info.features
    attributes, landmarks = list(features["attributes"].keys()), list(features["landmarks"].keys())
    assert _kinds(src) == {"landmarks": "regression", "attributes": "multilabel"}
    tasks = src.tasks()
    assert tasks["attributes"].classes == attributes and len(attributes) == 40
    assert tasks["landmarks"].units == 10
    assert src.feature_map.skipped == (("identity", IDENTIFIER),)
    assert src.flip_ok is False  # mirrored landmarks would swap left and right

    x, y, w = _batch("celeb_a")
    raw = _raw("celeb_a")
    assert x.shape == (N, SIZE, SIZE, 3)
    np.testing.assert_array_equal(y["attributes"], [[float(ex["attributes"][k]) for k in attributes] for ex in raw])
    np.testing.assert_array_equal(y["landmarks"], [[ex["landmarks"][k] for k in landmarks] for ex in raw])
    assert w["attributes"].tolist() == [1.0] * N and w["landmarks"].tolist() == [1.0] * N


def test_celeb_a_binary_bool_tasks_and_an_override(mock):
    src = TfdsSource("celeb_a", bool_tasks="binary")
    kinds = _kinds(src)
    assert len(kinds) == 41 and kinds.pop("landmarks") == "regression" and set(kinds.values()) == {"classification"}
    # Names come from the keys; one that is no identifier ("5_o_Clock_Shadow") keeps its parent's.
    assert {"smiling", "no_beard", "attributes_5_o_clock_shadow"} <= set(kinds)
    assert src.tasks()["smiling"].classes == ["not Smiling", "Smiling"]

    labels = ["smiling=attributes/Smiling:classification", "nose=landmarks/nose_x"]
    src = TfdsSource("celeb_a", labels=labels)
    assert _kinds(src) == {"landmarks": "regression", "attributes": "multilabel", "smiling": "classification",
                           "nose": "regression"}
    _, y, _ = _batch("celeb_a", labels=labels)
    raw = _raw("celeb_a")
    assert y["smiling"].tolist() == [int(ex["attributes"]["Smiling"]) for ex in raw]
    assert y["nose"][:, 0].tolist() == [float(ex["landmarks"]["nose_x"]) for ex in raw]


def test_nyu_depth_v2_depth_is_the_depth_task(mock):
    src = mk.data.get_source("tfds:nyu_depth_v2")
    assert _kinds(src) == {"depth": "depth"} and src.feature_map.skipped == ()
    _, y, w = _batch("nyu_depth_v2")
    raw = np.stack([ex["depth"].astype(np.float32) for ex in _raw("nyu_depth_v2")])
    expected = tf.image.resize(raw[..., None], [SIZE, SIZE], method="nearest")[..., 0].numpy()
    valid = (expected > 0) & (expected <= src.tasks()["depth"].max_depth)
    assert y["depth"].shape == (N, SIZE, SIZE) and valid.mean() > 0.9
    np.testing.assert_allclose(y["depth"][valid], expected[valid])
    np.testing.assert_array_equal(w["depth"], valid.astype(np.float32))


def test_a_dense_float_map_is_skipped_with_its_reason_without_the_depth_task_type(mock, monkeypatch):
    monkeypatch.delitem(TASK_TYPES, "depth")
    found = map_features(tfds.builder("nyu_depth_v2").info.features)
    assert found.labels == ()
    reason = "a per-pixel float map (dense regression): this install has no 'depth' task type"
    assert found.skipped == (("depth", reason),)
    with pytest.raises(MtlError, match=r"^tfds:nyu_depth_v2: no feature maps to a task \(1 skipped\)"):
        TfdsSource("nyu_depth_v2")


def test_caltech_birds_label_box_and_foreground_mask(mock):
    src = mk.data.get_source("tfds:caltech_birds2011")
    assert _kinds(src) == {"label": "classification", "bbox": "box", "segmentation_mask": "segmentation"}
    assert len(src.tasks()["label"].classes) == 200
    assert src.tasks()["segmentation_mask"].classes == ["background", "foreground"]
    assert dict(src.feature_map.skipped) == {"image/filename": "text", "label_name": "text"}

    x, y, w = _batch("caltech_birds2011")
    raw = _raw("caltech_birds2011")
    assert y["label"].tolist() == [ex["label"] for ex in raw]
    boxes = np.stack([ex["bbox"] for ex in raw])
    valid = _valid(boxes)
    assert 0 < valid.sum() < N  # the mock data has both: an empty box is a missing label
    assert w["bbox"].tolist() == valid.astype(np.float32).tolist()
    np.testing.assert_allclose(y["bbox"][valid], boxes[valid])
    for ex, mask in zip(raw, y["segmentation_mask"]):
        expected = tf.image.resize((ex["segmentation_mask"] > 0).astype(np.uint8), [SIZE, SIZE], method="nearest")
        np.testing.assert_array_equal(mask, expected.numpy()[..., 0])


@pytest.mark.parametrize("name, seq, field, present", [("kitti", "objects", "type", "present"),
                                                        ("wider_face", "faces", None, "faces_present")])
def test_a_sequence_of_boxes_is_a_detection_and_its_present(mock, name, seq, field, present):
    src = mk.data.get_source(f"tfds:{name}")
    features = tfds.builder(name).info.features[seq].feature
    assert _kinds(src) == {seq: "detection", present: "multilabel"}
    classes = list(features[field].names) if field else [seq]  # no class label: one class, named after it
    assert src.tasks()[seq].classes == classes and src.tasks()[present].classes == classes
    others = {f"{seq}/{k}" for k in features.keys()} - {f"{seq}/bbox", f"{seq}/{field}"}
    assert others <= dict(src.feature_map.skipped).keys()

    k, m = len(classes), src.max_objects
    examples = list(src.examples("val", SIZE, size=N))
    for ex, raw in zip(examples, _raw(name)):
        boxes = raw[seq]["bbox"]
        labels = raw[seq][field] if field else np.zeros(len(boxes), np.int64)
        n = min(len(boxes), len(labels))  # mock data's fields differ in length
        keep = _valid(boxes[:n])
        got = {key: v.numpy() for key, v in ex["labels"][seq].items()}
        assert got["boxes"].shape == (m, 4) and got["labels"].shape == (m,)
        kept = int(keep.sum())
        np.testing.assert_allclose(got["boxes"][:kept], boxes[:n][keep])
        assert got["labels"][:kept].tolist() == labels[:n][keep].tolist() and set(got["labels"][kept:]) == {-1}
        hot = [float(c in set(labels[:n][keep])) for c in range(k)]
        assert ex["labels"][present].numpy().tolist() == hot

    _, y, _ = _batch(name)
    assert y[seq].shape == (N, SIZE // 4, SIZE // 4, k + 5)
    assert y[present].tolist() == [ex["labels"][present].numpy().tolist() for ex in examples]


def test_mnist_label_only_with_a_grayscale_image_made_rgb(mock):
    src = mk.data.get_source("tfds:mnist")
    assert _kinds(src) == {"label": "classification"}
    assert src.tasks()["label"].classes == [str(i) for i in range(10)]
    raw = _raw("mnist")
    for ex, r in zip(src.examples("test", SIZE, size=N), raw):
        np.testing.assert_array_equal(ex["image"].numpy(), np.repeat(r["image"], 3, axis=-1))
        assert int(ex["labels"]["label"]) == r["label"]


def test_describe_lists_tasks_with_classes_then_skipped_features(mock):
    text = TfdsSource("celeb_a").describe()
    lines = text.splitlines()
    assert lines[0] == "tfds:celeb_a: input image (218x178x3); splits train=train, val=validation, test=test"
    assert lines[2].split()[:4] == ["landmarks", "regression", "landmarks", "(10"]
    assert lines[3].split()[:5] == ["attributes", "multilabel", "attributes", "40:", "5_o_Clock_Shadow,"]
    assert lines[4:] == ["skipped:", f"  identity: {IDENTIFIER}"]


def test_overrides_replace_a_default_task_or_add_one(mock):
    src = TfdsSource("caltech_birds2011", labels=["bird=label", "where=bbox:regression"])
    # "bird" reads label as the default "label" task did, so it replaces it; "where" is another kind: added.
    assert _kinds(src) == {"bird": "classification", "bbox": "box", "segmentation_mask": "segmentation",
                           "where": "regression"}
    src = TfdsSource("kitti", labels=["occlusion=objects/occluded:multilabel", "objects=objects/occluded:detection"])
    tasks = src.tasks()
    occluded = list(tfds.builder("kitti").info.features["objects"]["occluded"].names)
    assert tasks["objects"].classes == tasks["occlusion"].classes == occluded and len(occluded) == 4
    assert "present" in tasks  # an override of one task leaves the others
    # An adapter's task can be overridden like any other.
    pets = TfdsSource("oxford_iiit_pet", labels=["head=head_bbox"])
    assert list(pets.tasks()) == ["breed", "species", "head", "mask"]


@pytest.mark.parametrize("label, message", [
    ("smiling", r"malformed label 'smiling'; expected TASK=FEATURE\[:KIND\]"),
    ("smiling=attributes/Smilng", r"no feature 'attributes/Smilng'; did you mean attributes/Smiling"),
    ("smiling=attributes/Smiling:box",
     r"feature 'attributes/Smiling' cannot be a box task \(it can be: classification, multilabel, regression\)"),
    ("smiling=attributes/Smiling:binary", r"unknown task kind 'binary'; available: box, classification"),
    ("2smile=attributes/Smiling", r"the task name '2smile' must be a Python identifier"),
    ("face=image", r"label 'face=image': 'image' is the input image"),
    ("who=identity/Identity_No:classification", r"cannot be a classification task \(it can be: regression\)"),
])
def test_a_bad_override_is_one_clear_error_naming_it(mock, label, message):
    with pytest.raises(MtlError, match=message) as caught:
        mk.data.get_source("tfds:celeb_a", labels=[label])
    assert "\n" not in str(caught.value) and repr(label)[1:-1] in str(caught.value)


def test_missing_splits_are_carved_from_the_others(mock, monkeypatch):
    # Mock data lists no splits; a prepared dataset does. cars196 has train and test: val is train's last 10%.
    src = TfdsSource("cars196")
    src._builder = types.SimpleNamespace(info=types.SimpleNamespace(splits={"train": 8144, "test": 8041}))
    asked, real_load = [], tfds.load

    def spy(name, split, **kw):
        asked.append(split)
        return real_load(name, split=split, **kw)

    monkeypatch.setattr(tfds, "load", spy)
    for split in ("train", "val", "test"):
        next(iter(src.examples(split, SIZE, size=1)))
    assert asked == ["train[:90%]", "train[90%:]", "test"]
