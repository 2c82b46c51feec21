"""Grad-CAM checks (mtl_keras.explain): metric maths on synthetic maps, score rules, the tf-keras-vis
pitfalls on this stack, layer choice, the CLI, and trained-vs-untrained localization."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import mtl_keras as mk
from mtl_keras.errors import MtlError
from mtl_keras.explain import cams as cam_lib
from mtl_keras.explain import checks, layers, scores
from mtl_keras.explain.report import explain, load_examples, main_box

SIZE = 64


# ----- metric maths on maps with known answers -------------------------------------------------
def test_degenerate_kinds():
    assert checks.degenerate(np.full((3, 3), np.nan)) == "nan"
    assert checks.degenerate(np.array([[1.0, np.inf]])) == "nan"
    assert checks.degenerate(np.zeros((3, 3))) == "zero"
    assert checks.degenerate(np.full((3, 3), 0.7)) == "constant"
    # Raw Grad-CAMs of an untrained net are tiny but still carry a "where": not degenerate.
    tiny = np.zeros((3, 3)); tiny[1, 2] = 1e-11
    assert checks.degenerate(tiny) is None


@pytest.mark.parametrize("size", [64, 224])
def test_pointing_tolerance_scales_with_image_size(size):
    tol = 15 * size / 224
    fine = np.zeros((size, size))
    box = [0.5, 0.5, 0.9, 0.9]
    inside_tol = int(0.5 * size - 0.6 * tol)  # a pixel just left/above the box, within the tolerance
    outside_tol = int(0.5 * size - 1.5 * tol) - 1
    for pos, expected in ((int(0.7 * size), True), (inside_tol, True), (outside_tol, False)):
        cam = fine.copy(); cam[pos, pos] = 1.0
        assert checks.pointing_hit(cam, box, size) is expected, (pos, expected)


def test_peak_is_cell_centre_for_coarse_maps():
    # A 2x2 map whose top cell is bottom-left points at the centre of that quadrant, not a corner.
    cam = np.array([[0.1, 0.2], [0.9, 0.3]])
    assert checks.peak_point(cam) == (0.75, 0.25)
    assert checks.pointing_hit(cam, [0.6, 0.1, 0.9, 0.4], 64)
    assert not checks.pointing_hit(cam, [0.0, 0.6, 0.4, 1.0], 64)


def test_energy_in_box_and_its_chance_level():
    box = [0.0, 0.0, 0.5, 0.5]
    inside = np.zeros((8, 8)); inside[:4, :4] = 1.0
    assert checks.energy_in_box(inside, box) == pytest.approx(1.0)
    uniform = np.ones((8, 8))
    assert checks.energy_in_box(uniform, box) == pytest.approx(checks.box_share(box, (8, 8))) == pytest.approx(0.25)
    split = np.zeros((8, 8)); split[0, 0] = 3.0; split[7, 7] = 1.0
    assert checks.energy_in_box(split, box) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        checks.energy_in_box(np.zeros((8, 8)), box)


def test_map_correlation_known_values():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert checks.map_correlation(a, 3 * a + 2) == pytest.approx(1.0)
    assert checks.map_correlation(a, -a) == pytest.approx(-1.0)
    assert abs(checks.map_correlation(a, rng.random((16, 16)))) < 0.2
    with pytest.raises(ValueError):
        checks.map_correlation(a, np.ones((16, 16)))


def test_summarize_keeps_degenerate_maps_apart():
    box = [0.0, 0.0, 0.5, 0.5]
    hit = np.zeros((4, 4)); hit[0, 0] = 1.0
    miss = np.zeros((4, 4)); miss[3, 3] = 1.0
    zero, nan = np.zeros((4, 4)), np.full((4, 4), np.nan)
    maps = {
        "a": [(hit, hit), (miss, miss), (zero, zero), (hit, hit)],
        "b": [(hit, hit), (nan, nan), (hit, hit), (hit, hit)],
    }
    boxes = [box, box, box, None]  # the last image has no box: usable, but not scored
    out = checks.summarize(maps, boxes, 64)
    a, b = out["tasks"]["a"], out["tasks"]["b"]
    assert a["degenerate"] == {"nan": [], "zero": [2], "constant": []}
    assert b["degenerate"] == {"nan": [1], "zero": [], "constant": []}
    assert a["pointing_game"]["n"] == 2 and a["pointing_game"]["hit_rate"] == 0.5
    assert a["pointing_game"]["hit_rate_all"] == pytest.approx(1 / 3)  # degenerate counted as a miss
    assert b["pointing_game"]["hit_rate"] == 1.0 and a["n_usable"] == 3
    assert a["energy_in_box"]["mean"] == pytest.approx(0.5)
    # Overlap only over images where both maps are usable (0 and 3): identical maps there.
    assert out["overlap"]["a|b"] == {"n": 2, "mean_correlation": pytest.approx(1.0)}


def test_main_box_prefers_box_label_then_largest_object():
    objects = {"boxes": np.array([[0, 0, .2, .2], [.1, .1, .9, .5], [-1, -1, -1, -1]]), "labels": np.array([0, 1, -1])}
    assert main_box({"box": np.array([.1, .2, .3, .4])}) == pytest.approx([.1, .2, .3, .4])
    assert main_box({"box": -np.ones(4), "objects": objects}) == pytest.approx([.1, .1, .9, .5])
    assert main_box({"count": 2.0}) is None


def test_parse_targets():
    from mtl_keras.cli.explain import parse_targets

    assert parse_targets(["label", "box=x1"], ["shape", "box"]) == {"shape": "label", "box": "x1"}
    assert parse_targets([], ["shape"]) == {}
    with pytest.raises(MtlError, match="--target names task 'colour'"):
        parse_targets(["colour=red"], ["shape"])


# ----- score rules -----------------------------------------------------------------------------
def test_score_rules_match_numpy():
    rng = np.random.default_rng(1)
    from mtl_keras.tasks import (BoxTask, ClassificationTask, DetectionTask, MultilabelTask, RegressionTask,
                                 SegmentationTask)

    cls = ClassificationTask("shape", classes=["a", "b", "c"])
    raw = rng.normal(size=(4, 3)).astype("float32")
    assert scores.build_score(cls, raw)(raw).numpy() == pytest.approx(raw.max(-1))
    assert scores.build_score(cls, raw, labels=[2, 0, 1, 1], target="label")(raw).numpy() == pytest.approx(
        raw[np.arange(4), [2, 0, 1, 1]])
    assert scores.build_score(cls, raw, target="b")(raw).numpy() == pytest.approx(raw[:, 1])
    with pytest.raises(MtlError, match="unknown target"):
        scores.build_score(cls, raw, target="zebra")

    ml = MultilabelTask("present", classes=["a", "b", "c"])
    labels = [[1, 0, 1]] * 4
    expect = np.where(np.array(labels) > 0, raw, -np.inf).max(-1)
    assert scores.build_score(ml, raw, labels=labels, target="label")(raw).numpy() == pytest.approx(expect)

    box = rng.uniform(0, 0.4, size=(4, 4)).astype("float32"); box[:, 2:] += 0.5
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    assert scores.build_score(BoxTask("box"), box)(box).numpy() == pytest.approx(area)
    assert scores.build_score(BoxTask("box"), box, target="x2")(box).numpy() == pytest.approx(box[:, 3])
    reg = rng.normal(size=(4, 1)).astype("float32")
    assert scores.build_score(RegressionTask("count"), reg)(reg).numpy() == pytest.approx(reg[:, 0])

    det = DetectionTask("objects", classes=["a", "b"])
    heat = rng.normal(size=(4, 8, 8, 6)).astype("float32")
    s = scores.build_score(det, heat)
    best = heat[..., :2].reshape(4, -1, 2).max(1)
    assert s(heat).numpy() == pytest.approx(best.max(-1))
    assert s.targets == [det.classes[i] for i in best.argmax(-1)]

    seg = SegmentationTask("mask", classes=["background", "a", "b"])
    logits = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    mask = np.zeros((2, 8, 8), int); mask[:, 2:5, 2:5] = 2; mask[:, 0, 0] = 1
    s = scores.build_score(seg, logits, labels=list(mask), target="label")
    assert s.targets == ["b", "b"]
    assert s(logits).numpy() == pytest.approx(logits[:, 2:5, 2:5, 2].mean(axis=(1, 2)), rel=1e-5)


def test_unsoftmax_recovers_raw_outputs():
    x = np.array([[-7.0, 0.0, 3.5, 12.0], [0.1, 0.2, 0.3, 0.4]], "float32")
    p = tf.nn.softmax(np.concatenate([x, np.zeros((2, 1), "float32")], 1))
    assert cam_lib.unsoftmax(p, (2, 2)).numpy() == pytest.approx(x.reshape(2, 2, 2), abs=1e-4)


# ----- the pitfalls of tf-keras-vis 0.8.7 on Keras 3, and that compute_cams avoids them -------------
@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(3)
    tasks = mk.data.tasks_for("shapes", names=["shape", "box", "count"])
    return mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=SIZE)


@pytest.fixture(scope="module")
def images():
    return np.stack([ex["image"] for ex in load_examples("shapes", "test", SIZE, 3)]).astype("float32")


def _manual_gradcam(model, images, layer, target, score):
    """Grad-CAM by hand: ReLU(sum_k mean(d score / d A_k) * A_k), score on the ``target`` tensor."""
    probe = keras.Model(model.inputs, [model.get_layer(layer).output, target])
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        feats, out = probe(x)
        s = score(out)
    grads = tape.gradient(s, feats)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * feats, -1)).numpy()


def test_dict_outputs_are_in_sorted_order_not_task_order(small_model):
    # The pitfall: tf-keras-vis pairs scores with model.outputs, which follow the sorted names.
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayerForGradcam

    assert [t.name for t in small_model.tasks] == ["shape", "box", "count"]
    inner = ExtractIntermediateLayerForGradcam(layers.tap_layers(small_model)["c5"], False)(small_model)
    assert [tuple(o.shape[1:]) for o in inner.outputs[:-1]] == [(4,), (1,), (6,)]  # box, count, shape
    # head_model fixes the order to the tasks' own.
    view = cam_lib.head_model(small_model, small_model.tasks)
    assert [tuple(o.shape[1:]) for o in view.outputs] == [(6,), (4,), (1,)]


def test_score_list_must_match_outputs(small_model, images):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    with pytest.raises(ValueError, match="number of score-functions"):
        Gradcam(small_model)(CategoricalScore(0), images, penultimate_layer=layers.tap_layers(small_model)["c5"],
                             seek_penultimate_conv_layer=False)


def test_seek_moves_off_a_non_conv_layer(small_model):
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayerForGradcam

    name = layers.tap_layers(small_model)["c5"]
    assert not isinstance(small_model.get_layer(name), keras.layers.Conv2D)
    sought = ExtractIntermediateLayerForGradcam(name, seek_conv_layer=True)(small_model).outputs[-1]
    kept = ExtractIntermediateLayerForGradcam(name, seek_conv_layer=False)(small_model).outputs[-1]
    assert sought is not small_model.get_layer(name).output
    assert kept is small_model.get_layer(name).output


def test_gradcam_equals_manual_gradcam_per_head(small_model, images):
    # Right head (InactiveScore on the others), right layer, right class, ReLU'd raw maps.
    res = cam_lib.compute_cams(small_model, images, layer="c4")
    c4 = layers.tap_layers(small_model)["c4"]
    logits = small_model.get_layer("shape").input
    # Untrained MobileNet logits are ~1e-11, so softmax ties: take the predicted class from the logits.
    cls = keras.Model(small_model.inputs, logits).predict_on_batch(images).argmax(-1)
    assert res["shape"].targets == [small_model.tasks[0].classes[i] for i in cls]
    cases = (
        ("shape", logits, lambda out: tf.reduce_sum(tf.gather(out, cls[:, None], axis=1, batch_dims=1))),
        ("box", small_model.get_layer("box").output,
         lambda b: tf.reduce_sum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))),
    )
    for name, target, score in cases:
        expect = _manual_gradcam(small_model, images, c4, target, score)
        got = res[name].maps
        assert got.shape == expect.shape == (3, SIZE // 16, SIZE // 16)
        assert np.abs(expect).max() > 0
        assert np.allclose(got, expect, rtol=1e-3, atol=1e-4 * np.abs(expect).max()), name


@pytest.mark.filterwarnings("ignore:The structure of `inputs`")
def test_scorecam_on_dict_model_fails_but_works_on_head_view(small_model, images):
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import InactiveScore

    c5 = layers.tap_layers(small_model)["c5"]
    seen = []

    def spy(out):
        seen.append(np.asarray(out))
        return out[:, 0]

    score = [InactiveScore(), InactiveScore(), spy]
    with pytest.raises(AttributeError):
        Scorecam(small_model)(score, images[:1], penultimate_layer=c5, seek_penultimate_conv_layer=False, max_N=2)
    Scorecam(cam_lib.head_model(small_model, small_model.tasks))(
        score, images[:1], penultimate_layer=c5, seek_penultimate_conv_layer=False, max_N=2)
    # Scorecam softmaxes every head: the 1-unit count head always reads 1.0 ...
    assert np.allclose(seen[-1], 1.0)
    # ... so compute_cams appends a 0 column and undoes the softmax: the score sees the raw count.
    seen.clear()
    view = cam_lib.head_model(small_model, small_model.tasks, scorecam=True)
    Scorecam(view)([InactiveScore(), InactiveScore(), lambda p: spy(cam_lib.unsoftmax(p, (1,)))], images[:1],
                   penultimate_layer=c5, seek_penultimate_conv_layer=False, max_N=2)
    raw_count = small_model.predict_on_batch(images[:1])["count"]
    assert np.allclose(seen[0][0], raw_count[0], atol=1e-3)


def test_every_method_and_dense_heads_give_maps():
    from mtl_keras.tasks import DetectionTask, SegmentationTask

    keras.utils.set_random_seed(4)
    tasks = mk.data.tasks_for("shapes", names=["color", "objects", "mask"])
    assert isinstance(tasks[1], DetectionTask) and isinstance(tasks[2], SegmentationTask)
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=SIZE)
    ex = load_examples("shapes", "test", SIZE, 2)
    x = np.stack([e["image"] for e in ex]).astype("float32")
    for method in cam_lib.METHODS:
        res = cam_lib.compute_cams(model, x, layer="c4", method=method, scorecam_channels=4,
                                   targets={"mask": "label"}, labels={"mask": [e["labels"]["mask"] for e in ex]})
        for name, r in res.items():
            assert r.maps.shape == (2, SIZE // 16, SIZE // 16), (method, name)
            assert np.isfinite(r.maps).all() and (r.maps >= 0).all(), (method, name)
    assert res["mask"].targets[0] in tasks[2].classes[1:]


# ----- which layer ------------------------------------------------------------------------------
def test_tap_layers_from_graph_match_the_trunk_spec():
    from mtl_keras.model.trunks import trunk_spec

    model = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "box"]), trunk="resnet50", image_size=SIZE)
    assert layers.tap_layers(model) == dict(trunk_spec("resnet50").tap_layers)
    assert layers.resolve_layer(model, "shape") == "conv5_block3_out"
    # The box head reads the stride-16 map only: auto gives it that, c5 is refused.
    assert layers.resolve_layer(model, "box") == "conv4_block6_out"
    with pytest.raises(MtlError, match="does not read layer"):
        layers.resolve_layer(model, "box", "c5")
    with pytest.raises(MtlError, match="no layer 'c9'"):
        layers.resolve_layer(model, "shape", "c9")
    with pytest.raises(MtlError, match="spatial"):
        layers.resolve_layer(model, "shape", "shared_pool")


def test_mobilenet_taps_have_their_strides(small_model):
    for tap, stride in {"c3": 8, "c4": 16, "c5": 32}.items():
        shape = small_model.get_layer(layers.tap_layers(small_model)[tap]).output.shape
        assert shape[1] == shape[2] == SIZE // stride


# ----- trained vs untrained, and the CLI ---------------------------------------------------------
EPOCHS = 7
# Hit rates over N images have a standard error of ~0.45/sqrt(N): 96 keeps it near 0.05.
N_CHECK = 96


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small shapes model (one object per image) before and after a short training budget."""
    keras.utils.set_random_seed(0)
    opts = {"max_objects": 1}
    tasks = mk.data.tasks_for("shapes", names=["shape", "box"], **opts)
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=SIZE)
    examples = load_examples("shapes", "test", SIZE, N_CHECK, **opts)
    # c3 (stride 8, 8x8 at 64 px): the box head flattens its 4x4 c4 map into a dense layer, so
    # Grad-CAM's spatially averaged gradients localize it only one stride finer (README, Explain).
    before = explain(model, examples, layer="c3")
    ds = mk.data.load("shapes", "train", image_size=SIZE, batch_size=32, tasks=tasks, size=1280, **opts)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # A fixed number of epochs (~50 s on 2 cores), so the outcome does not depend on machine speed.
    model.fit(ds, epochs=EPOCHS, verbose=0)
    after = explain(model, examples, layer="c3")
    path = str(tmp_path_factory.mktemp("trained") / "model.keras")
    model.save(path)
    return {"before": before, "after": after, "path": path}


@pytest.mark.slow
def test_trained_model_localizes_better_than_untrained(trained):
    before, after = trained["before"]["tasks"], trained["after"]["tasks"]

    def rate(t):
        return t["pointing_game"]["hit_rate_all"]

    for name in ("shape", "box"):
        print(name, "pointing", rate(before[name]), "->", rate(after[name]),
              "energy", before[name]["energy_in_box"]["mean"], "->", after[name]["energy_in_box"]["mean"])
    # The box head learns fastest in a short budget; its checks must move clearly: the hit-rate gain
    # must stand two standard errors above what two equally good models would show (two-proportion z).
    pooled = (rate(after["box"]) + rate(before["box"])) / 2
    standard_error = np.sqrt(2 * pooled * (1 - pooled) / N_CHECK)
    assert rate(after["box"]) - rate(before["box"]) >= 2 * standard_error
    assert after["box"]["energy_in_box"]["mean"] >= before["box"]["energy_in_box"]["mean"] + 0.04
    assert np.mean([rate(after[n]) for n in after]) > np.mean([rate(before[n]) for n in before])
    # A trained box head points better than a random point would.
    assert rate(after["box"]) > after["box"]["pointing_game"]["chance"] + 0.1


@pytest.mark.slow
def test_cli_writes_overlays_and_checks(trained, tmp_path):
    out = tmp_path / "gradcam"
    cmd = [sys.executable, "-m", "mtl_keras.cli", "explain", trained["path"], "--data", "shapes", "--n", "3",
           "--out", str(out), "--batch-size", "2", "--target", "box=area", "--baseline"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "cam_checks.json").read_text())
    assert report["n_images"] == 3 and set(report["tasks"]) == {"shape", "box"}
    assert report["tasks"]["shape"]["tap"] == "c5" and report["tasks"]["box"]["tap"] == "c4"  # auto, per head
    assert set(report["overlap"]) == {"shape|box"}
    assert set(report["baseline_untrained"]["tasks"]) == {"shape", "box"}
    assert "untrained copy" in proc.stdout
    from PIL import Image

    pngs = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert pngs == ["0000.png", "0001.png", "0002.png"] and [i["png"] for i in report["images"]] == pngs
    w, h = Image.open(out / "0000.png").size
    assert w == 3 * 192 + 2 * 4 and h > 192  # input + one overlay per task
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temp files left

    bad = subprocess.run(cmd[:-3] + ["--layer", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "error: no layer 'nope'" in bad.stderr


def test_heads_not_reading_the_layer_are_skipped_with_a_reason(trained):
    model = mk.load_model(trained["path"], compile=False)
    rep = explain(model, load_examples("shapes", "test", SIZE, 2), layer="c5")
    assert set(rep["tasks"]) == {"shape"} and "does not read layer" in rep["skipped"]["box"]
    with pytest.raises(MtlError, match="no head can be explained"):
        explain(model, load_examples("shapes", "test", SIZE, 1), tasks=["box"], layer="c5")
