"""The contract every task type keeps, run over ``mtl_keras.tasks.TASK_TYPES``, and a toy seventh type
defined only here that the model card, the export report, the uncertainty balancer and Grad-CAM take
without a change anywhere else: a task type is one file."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from demo import heads
from export.card import new_card
from export.report import DROP_TOLERANCE, drop_hints
from mtl_keras.balancing import Uncertainty
from mtl_keras.errors import MtlError
from mtl_keras.explain import cams, scores
from mtl_keras.tasks import TASK_TYPES, Task, TaskExample, register_task_type
from mtl_keras.tasks.scoring import TaskScore

IMAGE_SIZE = 16
# Read at collection, before the toy type below is registered by its fixture.
KINDS = sorted(TASK_TYPES)


def _json_round_trip(value):
    # allow_nan=False: NaN is not JSON, and a device's JSON parser rejects it.
    return json.loads(json.dumps(value, allow_nan=False))


# ----- the contract, one check per promise ----------------------------------------------------------
def check_config_round_trip(cls):
    task = cls.example(IMAGE_SIZE).task
    assert type(task) is cls and TASK_TYPES[task.kind] is cls
    config = task.get_config()
    assert config["kind"] == cls.kind
    # The model card stores the config as JSON, and a saved model rebuilds its tasks from it.
    assert _json_round_trip(config) == config
    back = Task.from_config(_json_round_trip(config))
    assert type(back) is cls and back == task and back.get_config() == config


def check_encode(cls):
    ex = cls.example(IMAGE_SIZE)
    target, weight = ex.task.encode(ex.label, IMAGE_SIZE)
    spec = ex.task.target_signature(IMAGE_SIZE)
    assert tuple(target.shape) == tuple(spec.shape) and target.dtype == spec.dtype
    weight = np.asarray(weight, np.float32)
    assert np.isfinite(weight).all() and ((weight >= 0) & (weight <= 1)).all()
    assert weight.max() > 0, "the example's label is present, so it must carry weight"


def check_decode(cls):
    ex = cls.example(IMAGE_SIZE)
    decoded = ex.task.decode(ex.output)
    assert isinstance(decoded, dict) and decoded
    assert _json_round_trip(decoded) == decoded


def check_export_tolerance(cls):
    tol = cls.export_tolerance
    if cls.higher_is_better:
        # Scores in [0, 1] (accuracy, F1, IoU, mAP): a drop is comparable across tasks.
        assert tol is not None, f"{cls.kind} has no export_tolerance"
    if tol is not None:
        assert isinstance(tol, (int, float)) and 0 < tol < 1


def check_likelihood_factor(cls):
    factor = cls.likelihood_factor
    assert isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0
    b = Uncertainty(tasks=["t"], kinds=[cls.kind])
    assert b.likelihood_factors().numpy().tolist() == pytest.approx([factor])


def check_gradcam_score(cls):
    ex = cls.example(IMAGE_SIZE)
    assert cls.has_gradcam_score()
    assert cls.kind in scores.SCORES
    assert scores.rule_for(ex.task).uses_logits is bool(cls.gradcam_reads_logits)
    raw = np.stack([ex.output, ex.output]).astype(np.float32)
    s = scores.build_score(ex.task, raw)
    assert isinstance(s, TaskScore) and isinstance(s.what, str) and s.what
    assert len(s.targets) == 2 and _json_round_trip(s.targets) == list(s.targets)
    values = np.asarray(s(raw))
    assert values.shape == (2,) and np.isfinite(values).all()


def check_card_decoding(cls):
    task = cls.example(IMAGE_SIZE).task
    settings = task.card_decoding()
    assert isinstance(settings, dict)
    assert _json_round_trip(settings) == settings
    entry = new_card([task], IMAGE_SIZE, {})["tasks"][0]
    assert entry["kind"] == cls.kind and entry["decoding"] == settings


CHECKS = [check_config_round_trip, check_encode, check_decode, check_export_tolerance, check_likelihood_factor,
          check_gradcam_score, check_card_decoding]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("kind", KINDS)
def test_task_type_keeps_the_contract(kind, check):
    check(TASK_TYPES[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_example_is_a_task_example(kind):
    ex = TASK_TYPES[kind].example(IMAGE_SIZE)
    assert isinstance(ex, TaskExample) and isinstance(ex.output, np.ndarray)


@pytest.mark.parametrize("kind", [k for k in KINDS if k in heads.KINDS])
def test_library_and_device_decode_alike(kind):
    # demo.heads is the one decoder; the device adds what the card asks for (e.g. a top-k list).
    ex = TASK_TYPES[kind].example(IMAGE_SIZE)
    entry = new_card([ex.task], IMAGE_SIZE, {})["tasks"][0]
    device = heads.decode(entry, ex.output)
    library = ex.task.decode(ex.output)
    device = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in device.items()}
    assert {k: device[k] for k in library} == library


def test_values_kept_from_before_they_moved_onto_the_classes():
    # export/report.py's metric table, balancing/uncertainty.py's kind table and export/card.py's if-chain.
    tolerance = {"classification": 0.01, "multilabel": 0.01, "box": 0.02, "detection": 0.02, "segmentation": 0.02,
                 "regression": None}
    assert {k: TASK_TYPES[k].export_tolerance for k in tolerance} == tolerance
    factor = {"classification": 1.0, "multilabel": 1.0, "box": 0.5, "detection": 1.0, "segmentation": 1.0,
              "regression": 0.5}
    assert {k: TASK_TYPES[k].likelihood_factor for k in factor} == factor
    assert {k: DROP_TOLERANCE.get(k) for k in ("accuracy", "f1", "iou", "map50", "miou", "mae")} == {
        "accuracy": 0.01, "f1": 0.01, "iou": 0.02, "map50": 0.02, "miou": 0.02, "mae": None}
    cards = [t.card_decoding() for t in (
        mk.tasks.ClassificationTask("c", classes=list("abcd")), mk.tasks.ClassificationTask("c", classes=list("ab")),
        mk.tasks.MultilabelTask("m", classes=["a"], threshold=0.4), mk.tasks.BoxTask("b"),
        mk.tasks.RegressionTask("r"), mk.tasks.DetectionTask("d", classes=["a"], score_threshold=0.2, max_objects=7),
        mk.tasks.SegmentationTask("s", classes=["bg", "a"]))]
    assert cards == [{"top_k": 3}, {"top_k": 2}, {"threshold": 0.4}, {}, {},
                     {"score_threshold": 0.2, "top_k": 7}, {"overlay_alpha": 0.45}]


# ----- a seventh task type, defined here only ------------------------------------------------------
class WithinOne(keras.metrics.MeanMetricWrapper):
    """Share of samples whose predicted grade is at most one away from the label."""

    def __init__(self, name="within_one", dtype=None):
        super().__init__(self.hit, name=name, dtype=dtype)

    @staticmethod
    def hit(y_true, y_pred):
        grade = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "float32")
        return keras.ops.cast(keras.ops.abs(grade - keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "float32")) <= 1,
                              "float32")


class GradeTask(Task):
    """An ordinal grade 0..levels-1; registered by the ``grade_type`` fixture only."""

    kind = "toy_grade"
    primary_metric = "within_one"
    higher_is_better = True
    export_tolerance = 0.05
    likelihood_factor = 0.25
    gradcam_reads_logits = True

    def __init__(self, name, levels: int = 5, **kwargs):
        super().__init__(name, **kwargs)
        self.levels = int(levels)

    @property
    def num_outputs(self):
        return self.levels

    def output_layer(self):
        return keras.layers.Activation("softmax", dtype="float32", name=self.name)

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")

    def metrics(self):
        return [WithinOne()]

    def encode(self, label, image_size):
        label = tf.cast(tf.reshape(label, []), tf.int32)
        return tf.maximum(label, 0), tf.cast(label >= 0, tf.float32)

    def target_signature(self, image_size):
        return tf.TensorSpec([], tf.int32)

    def decode(self, output):
        p = np.asarray(output, np.float32).reshape(-1)
        return {"grade": int(p.argmax()), "expected": round(float((p * np.arange(len(p))).sum()), 4)}

    def card_decoding(self):
        return {"levels": self.levels}

    def gradcam_score(self, raw, labels, target):
        # The expected grade under the softmax of the logits.
        grades = tf.range(self.levels, dtype=tf.float32)
        return TaskScore(lambda out: tf.reduce_sum(tf.nn.softmax(out) * grades, -1), ["grade"] * len(raw),
                         "expected grade")

    @classmethod
    def example(cls, image_size=16):
        return TaskExample(cls("grade"), np.int64(3), np.array([0.05, 0.05, 0.1, 0.6, 0.2], np.float32))

    def get_config(self):
        return {**super().get_config(), "levels": self.levels}


class Unscored(GradeTask):
    """A type with no Grad-CAM score rule of its own (the base class's)."""

    kind = "toy_unscored"
    gradcam_score = Task.gradcam_score


@pytest.fixture
def grade_type(request):
    assert GradeTask.kind not in TASK_TYPES
    cls = register_task_type(GradeTask)
    request.addfinalizer(lambda: TASK_TYPES.pop(GradeTask.kind, None))
    return cls


@pytest.fixture
def unscored_type(request):
    cls = register_task_type(Unscored)
    request.addfinalizer(lambda: TASK_TYPES.pop(Unscored.kind, None))
    return cls


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_a_new_task_type_keeps_the_contract(grade_type, check):
    check(grade_type)


def test_a_new_task_type_reaches_the_card_and_the_report(grade_type):
    task = grade_type("grade", levels=4)
    card = new_card([task], IMAGE_SIZE, {"data": "toy"})
    entry = card["tasks"][0]
    assert (entry["kind"], entry["decoding"], entry["primary_metric"]) == ("toy_grade", {"levels": 4}, "within_one")
    assert Task.from_config(entry["config"]) == task
    json.dumps(card, allow_nan=False)
    # Its own tolerance (0.05), which no metric table in export/report.py knows.
    assert drop_hints([task], {"grade": {"within_one": 0.9}}, {"grade": {"within_one": 0.86}}) == []
    assert drop_hints([task], {"grade": {"within_one": 0.9}}, {"grade": {"within_one": 0.84}}) == ["grade"]
    assert DROP_TOLERANCE["within_one"] == 0.05


def test_a_new_task_type_reaches_the_uncertainty_balancer(grade_type):
    b = Uncertainty(tasks=["grade", "count"], kinds=["toy_grade", "regression"])
    assert b.likelihood_factors().numpy().tolist() == pytest.approx([0.25, 0.5])
    # The saved config stores kinds, not factors: a reloaded balancer looks the type up again.
    config = _json_round_trip(b.get_config())
    assert config["factors"] == {} and config["kinds"] == ["toy_grade", "regression"]
    again = Uncertainty.from_config(config)
    assert again.likelihood_factors().numpy().tolist() == pytest.approx([0.25, 0.5])
    # factors= still overrides the type per task name.
    assert Uncertainty(tasks=["grade"], kinds=["toy_grade"], factors={"grade": 2.0}).likelihood_factors(
    ).numpy().tolist() == [2.0]


def test_a_new_task_type_is_explained(grade_type):
    task = grade_type("grade")
    model = mk.build_model([task], trunk="mobilenet_v3_small", image_size=32)
    model.compile(optimizer="adam", balancer="uncertainty")
    assert model.balancer.likelihood_factors().numpy().tolist() == [0.25]
    # The score reads the logits (gradcam_reads_logits), the input of the softmax layer.
    assert scores.score_tensor(model, task) is model.get_layer("grade").input
    res = cams.compute_cams(model, np.zeros((1, 32, 32, 3), "float32"))
    assert res["grade"].kind == "toy_grade" and res["grade"].what == "expected grade"
    assert res["grade"].maps.shape[0] == 1 and res["grade"].targets == ["grade"]


def test_a_task_type_without_a_score_rule_is_named(unscored_type):
    task = unscored_type("plain")
    assert not unscored_type.has_gradcam_score()
    assert "toy_unscored" not in scores.SCORES
    with pytest.raises(MtlError, match="unknown score rule for task 'plain' of kind 'toy_unscored'"):
        scores.build_score(task, np.zeros((1, 5), "float32"))


def test_registered_toy_types_are_gone_after_their_test():
    assert not {"toy_grade", "toy_unscored"} & set(TASK_TYPES)
    assert not {"toy_grade", "toy_unscored"} & set(scores.SCORES)
