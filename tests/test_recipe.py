"""The training recipe: warm-up + cosine schedule, optimizers, no decay on BatchNorm/biases,
label smoothing, zero-initialised residual blocks, the shared pyramid for global heads, dense
dependencies, and the train flags that reach them."""

import math

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.cli.arguments import parse_dependencies_only, parse_depends_on
from mtl_keras.errors import MtlError
from mtl_keras.train.recipe import configure_tasks, learning_rate_schedule, make_optimizer
from mtl_keras.tasks.classification import SparseSmoothedCrossentropy


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_one_percent():
    s = learning_rate_schedule(2.0, total_steps=100, warmup_steps=20)
    assert float(s(0)) == pytest.approx(0.0)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(20)) == pytest.approx(2.0)
    # Half-way through the decay: the cosine mean of peak and floor.
    assert float(s(60)) == pytest.approx(0.01 * 2 + (2 - 0.02) * 0.5, rel=1e-4)
    assert float(s(100)) == pytest.approx(0.02, rel=1e-4)
    assert float(learning_rate_schedule(1.0, 50, 10, "constant")(40)) == pytest.approx(1.0)
    assert learning_rate_schedule(1.0, 0) == 1.0  # unknown length: the peak rate throughout


@pytest.mark.parametrize("bad", [dict(peak=0.0), dict(peak=float("nan")), dict(warmup_steps=-1), dict(schedule="step")])
def test_schedule_refuses_bad_settings_with_a_message(bad):
    kwargs = {"peak": 1.0, "total_steps": 10, "warmup_steps": 0, "schedule": "cosine", **bad}
    with pytest.raises(MtlError):
        learning_rate_schedule(**kwargs)


def test_adamw_and_sgd_decay_kernels_but_not_batchnorm_or_biases():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    for name in ("adamw", "sgd"):
        opt = make_optimizer(name, 0.1, total_steps=10, weight_decay=0.5)
        opt.build(model.trainable_variables)
        decayed = {v.name: opt._use_weight_decay(v) for v in model.trainable_variables}
        assert decayed == {"kernel": True, "bias": False, "gamma": False, "beta": False}, (name, decayed)
    assert make_optimizer("sgd", 0.1).nesterov
    with pytest.raises(MtlError, match="optimizer"):
        make_optimizer("rmsprop")
    with pytest.raises(MtlError, match="adamw"):
        make_optimizer("adam", weight_decay=0.1)


def test_label_smoothing_loss_matches_the_formula_and_masks_missing_labels():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    y = np.array([0, 2])
    ls = 0.3
    target = np.full((2, 3), ls / 3)
    target[[0, 1], y] += 1 - ls
    expected = -(target * np.log(p)).sum(axis=1)
    loss = SparseSmoothedCrossentropy(ls)
    assert float(loss(y, p)) == pytest.approx(expected.mean(), rel=1e-5)
    # A weight of 0 (missing label) neither adds nor dilutes: the masked mean is the other sample's loss.
    assert float(loss(y, p, sample_weight=np.array([0.0, 1.0]))) == pytest.approx(expected[1], rel=1e-5)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.label_smoothing == pytest.approx(ls)


def test_classification_task_uses_its_label_smoothing_and_keeps_it_through_saving(tmp_path):
    task = mk.tasks.ClassificationTask("shape", classes=["a", "b", "c"], label_smoothing=0.1)
    assert isinstance(task.loss(), SparseSmoothedCrossentropy)
    assert not isinstance(mk.tasks.ClassificationTask("s", classes=["a", "b"]).loss(), SparseSmoothedCrossentropy)
    with pytest.raises(MtlError, match="label_smoothing"):
        mk.tasks.ClassificationTask("s", classes=["a", "b"], label_smoothing=1.0)
    model = mk.build_model([task], trunk="mobilenet_v3_small", image_size=32)
    model.compile()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = mk.load_model(path)
    assert loaded.task("shape").label_smoothing == pytest.approx(0.1)


def _gammas(model):
    return {l.name: float(np.abs(l.gamma.numpy()).sum()) for l in model.layers
            if isinstance(l, keras.layers.BatchNormalization) and l.name.endswith("_3_bn")}


def test_zero_init_residual_zeroes_exactly_the_last_batchnorm_of_each_resnet_block():
    tasks = mk.data.tasks_for("shapes", names=["shape"])
    zeroed = _gammas(mk.build_model(tasks, "resnet50", 32))
    assert len(zeroed) == 16 and not any(zeroed.values())  # 3 + 4 + 6 + 3 bottleneck blocks
    assert all(_gammas(mk.build_model(tasks, "resnet50", 32, zero_init_residual=False)).values())
    m = mk.build_model(tasks, "resnet50", 32)
    assert float(m.get_layer("conv2_block1_2_bn").gamma.numpy().min()) == 1.0  # inner BatchNorms untouched


def test_global_heads_read_the_pooled_pyramid_only_when_a_dense_head_trains_it():
    dense = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "mask"]), "mobilenet_v3_small", 64)
    names = {l.name for l in dense.layers}
    assert {"pyramid_pool", "shared_features", "fpn_lateral_c2"} <= names
    assert dense.get_layer("shape_hidden").input.shape[-1] == dense.get_layer("shared_pool").output.shape[-1] + 64
    plain = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "color"]), "mobilenet_v3_small", 64)
    assert not {"pyramid_pool", "shared_features"} & {l.name for l in plain.layers}
    forced = mk.build_model(mk.data.tasks_for("shapes", names=["shape", "mask"]), "mobilenet_v3_small", 64,
                            pool_pyramid=False)
    assert "pyramid_pool" not in {l.name for l in forced.layers}


def test_a_dense_dependency_is_pooled_standardised_and_reaches_the_head(tmp_path):
    tasks = mk.data.tasks_for("shapes", names=["shape", "objects"])
    tasks[0].depends_on = ("objects",)
    model = mk.build_model(tasks, "mobilenet_v3_small", 32)
    pooled = model.get_layer("shape_pool_0")
    # Per class: the mean heatmap score and the largest score x box area (which object is biggest).
    assert isinstance(pooled, mk.layers.DetectionSummary) and tuple(pooled.output.shape) == (None, 12)
    assert isinstance(model.get_layer("shape_pool_0_bn"), keras.layers.BatchNormalization)
    # The shape output changes when only the objects head's last layer changes: the dependency is live.
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    before = model(x)["shape"].numpy()
    bias = model.get_layer("objects_heat_logits").bias
    bias.assign(bias.numpy() + 3.0)
    assert not np.allclose(before, model(x)["shape"].numpy())
    model.compile()
    model.save(tmp_path / "m.keras")
    loaded = mk.load_model(tmp_path / "m.keras")
    assert loaded.task("shape").depends_on == ("objects",)
    np.testing.assert_allclose(loaded(x)["shape"].numpy(), model(x)["shape"].numpy(), atol=1e-6)


def test_detection_summary_tells_the_biggest_object_apart():
    # One big circle and three small squares: the mean scores favour squares, the largest
    # score x area names the circle, the object a "main object" head is asked about.
    m = np.zeros((1, 8, 8, 2 + 4), "float32")
    m[0, 2, 2, 0], m[0, 2, 2, 2:4] = 0.9, (0.6, 0.6)
    for y, x in ((6, 1), (6, 4), (1, 6)):
        m[0, y, x, 1], m[0, y, x, 2:4] = 0.9, (0.1, 0.1)
    mean, biggest = np.split(mk.layers.DetectionSummary(num_classes=2)(m).numpy()[0], 2)
    assert mean[1] > mean[0] and biggest[0] > biggest[1]
    np.testing.assert_allclose(biggest, [0.9 * 0.36, 0.9 * 0.01], rtol=1e-6)


def test_main_object_pool_reads_the_features_where_the_largest_confident_object_is():
    m = np.zeros((1, 8, 8, 2 + 4), "float32")
    m[0, 2, 2, 0], m[0, 2, 2, 2:4] = 0.9, (0.6, 0.6)   # the main object: big and confident
    m[0, 6, 5, 1], m[0, 6, 5, 2:4] = 0.9, (0.3, 0.3)   # a smaller one
    m[0, 5, 1, 1], m[0, 5, 1, 2:4] = 0.2, (0.7, 0.7)   # a large box the detector hardly believes in
    features = np.random.default_rng(0).normal(size=(1, 8, 8, 5)).astype("float32")
    pooled = mk.layers.MainObjectPool(num_classes=2)([m, features]).numpy()[0]
    np.testing.assert_allclose(pooled, features[0, 2, 2], atol=1e-4)
    # A detector that sees nothing yet (flat scores) leaves a plain global average.
    flat = np.full((1, 8, 8, 6), 0.01, "float32")
    np.testing.assert_allclose(mk.layers.MainObjectPool(2)([flat, features]).numpy()[0],
                               features[0].mean(axis=(0, 1)), atol=1e-5)
    # The weights pass no gradient to the detector: the reader uses its answer, it does not bend it.
    import tensorflow as tf
    det = tf.Variable(m)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(mk.layers.MainObjectPool(2)([det, features]))
    assert tape.gradient(out, det) is None
    with pytest.raises(ValueError, match="temperature must be positive"):
        mk.layers.MainObjectPool(2, temperature=0.0)


def test_main_object_pool_picks_the_larger_of_two_close_objects_however_small_they_are():
    features = np.random.default_rng(3).normal(size=(1, 8, 8, 4)).astype("float32")
    for side in (0.5, 0.1):   # two objects 10 % apart in side, large and then small
        m = np.zeros((1, 8, 8, 1 + 4), "float32")
        m[0, 1, 1, 0], m[0, 1, 1, 1:3] = 0.9, (side, side)
        m[0, 6, 6, 0], m[0, 6, 6, 1:3] = 0.9, (0.9 * side, 0.9 * side)
        relative = mk.layers.MainObjectPool(1)([m, features]).numpy()[0]
        absolute = mk.layers.MainObjectPool(1, temperature=0.01, scale="absolute")([m, features]).numpy()[0]
        # Relative weights put ~99 % on the larger object at both scales; the first (absolute)
        # weighting did for large objects, and nearly averaged two small ones.
        share = (relative - features[0, 6, 6]) / (features[0, 1, 1] - features[0, 6, 6])
        np.testing.assert_allclose(share, 1.0, atol=0.01)
        absolute_share = (absolute - features[0, 6, 6]) / (features[0, 1, 1] - features[0, 6, 6])
        assert absolute_share.min() > 0.95 if side == 0.5 else absolute_share.max() < 0.7
    with pytest.raises(ValueError, match="scale must be one of relative, absolute"):
        mk.layers.MainObjectPool(1, scale="log")


def test_a_main_object_pool_saved_before_scale_existed_keeps_its_absolute_weights():
    old = {"name": "color_main_object_0", "num_classes": 6, "temperature": 0.01}
    assert mk.layers.MainObjectPool.from_config(old).scale == "absolute"
    new = mk.layers.MainObjectPool(6).get_config()
    assert mk.layers.MainObjectPool.from_config(new).scale == "relative"


def test_a_head_reads_its_dependency_directly_and_through_the_hidden_layer():
    tasks = mk.data.tasks_for("shapes", names=["color", "objects"])
    tasks[0].depends_on = ("objects",)
    model = mk.build_model(tasks, "mobilenet_v3_small", 32)
    # The reader of a detector gets its summary, and the pyramid and the pixels pooled at its main object ...
    assert isinstance(model.get_layer("color_main_object_0"), mk.layers.MainObjectPool)
    assert isinstance(model.get_layer("color_main_pixels_0"), mk.layers.MainObjectPool)
    reads = model.get_layer("color_reads_0").output.shape[-1]
    assert reads == 12 + 64 + 3
    # ... into the hidden layer and, through a linear layer that starts at zero, into the logits.
    wide = model.get_layer("color_deps_logits")
    assert wide.kernel.shape == (reads, 6) and not np.any(wide.kernel.numpy())
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    before = model(x)["color"].numpy()
    wide.kernel.assign(np.random.default_rng(2).normal(size=wide.kernel.shape).astype("float32"))
    assert not np.allclose(before, model(x)["color"].numpy())
    # A head with no dependency has no such layer.
    plain = mk.build_model(mk.data.tasks_for("shapes", names=["color"]), "mobilenet_v3_small", 32)
    assert not [l.name for l in plain.layers if "deps_logits" in l.name]


def test_a_mask_reads_the_detection_map_on_its_own_grid():
    tasks = mk.data.tasks_for("shapes", names=["objects", "mask"])
    tasks[1].depends_on = ("objects",)
    model = mk.build_model(tasks, "mobilenet_v3_small", 32)
    pyramid, detections = model.get_layer("mask_with_deps").input
    # The map itself, and max-pooled over 5, 9 and 17 cells.
    assert tuple(detections.shape) == (None, 8, 8, 4 * (6 + 4)) and tuple(pyramid.shape[1:3]) == (8, 8)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    before = model(x)["mask"].numpy()
    bias = model.get_layer("objects_heat_logits").bias
    bias.assign(bias.numpy() + 3.0)
    assert not np.allclose(before, model(x)["mask"].numpy())
    # A dense head has no map to read in a global output.
    tasks = mk.data.tasks_for("shapes", names=["shape", "mask"])
    tasks[1].depends_on = ("shape",)
    with pytest.raises(MtlError, match="'mask' is dense and can only depend on dense tasks; 'shape' is not"):
        mk.build_model(tasks, "mobilenet_v3_small", 32)


def test_a_head_that_reads_only_its_dependencies_skips_the_shared_features(tmp_path):
    tasks = mk.data.tasks_for("shapes", names=["color", "objects", "mask"])
    configure_tasks(tasks, 0.0, {"color": ("objects",)}, dependencies_only=("color",))
    model = mk.build_model(tasks, "mobilenet_v3_small", 32)
    # Its hidden layer reads the detector's 12 + 64 + 3 values, not the 2,000-odd pooled features beside them.
    assert model.get_layer("color_hidden").kernel.shape[0] == 12 + 64 + 3
    assert "shared_features" not in [layer.name for layer in model.layers]  # no global head reads them
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = mk.load_model(tmp_path / "m.keras")  # safe_mode: the setting is part of the task's config
    assert [t.shared_features for t in again.tasks] == [False, True, True]
    np.testing.assert_allclose(again(x)["color"], model(x)["color"], atol=1e-6)
    # With the shared features (the default) the same head reads both.
    tasks = mk.data.tasks_for("shapes", names=["color", "objects"])
    configure_tasks(tasks, 0.0, {"color": ("objects",)})
    default = mk.build_model(tasks, "mobilenet_v3_small", 32)
    shared = default.get_layer("shared_features").output.shape[-1]
    assert shared > 500 and default.get_layer("color_hidden").kernel.shape[0] == shared + 79


def test_a_head_without_shared_features_needs_dependencies_and_a_global_output():
    tasks = mk.data.tasks_for("shapes", names=["color"])
    tasks[0].shared_features = False
    with pytest.raises(MtlError, match="'color' reads no shared features .* depends on no other task"):
        mk.build_model(tasks, "mobilenet_v3_small", 32)
    tasks = mk.data.tasks_for("shapes", names=["objects", "mask"])
    configure_tasks(tasks, 0.0, {"mask": ("objects",)}, dependencies_only=("mask",))
    with pytest.raises(MtlError, match="'mask' is dense: its head always reads the shared feature maps"):
        mk.build_model(tasks, "mobilenet_v3_small", 32)
    # So does the library's configure_tasks, for callers without the flag.
    with pytest.raises(MtlError, match="'color', which depends on no task here"):
        configure_tasks(mk.data.tasks_for("shapes", names=["color", "objects"]), 0.0, {}, dependencies_only=("color",))
    with pytest.raises(MtlError, match="dependencies_only names 'colour', not a task here"):
        configure_tasks(mk.data.tasks_for("shapes", names=["color"]), 0.0, {}, dependencies_only=("colour",))
    # The flag names its mistakes before anything is built.
    deps = {"color": ("objects",)}
    assert parse_dependencies_only("color", deps, ["color", "objects"]) == ("color",)
    with pytest.raises(MtlError, match="'shape', not trained here"):
        parse_dependencies_only("shape", deps, ["color", "objects"])
    with pytest.raises(MtlError, match="'objects', which has no --depends-on entry"):
        parse_dependencies_only("objects", deps, ["color", "objects"])


def test_a_mask_sees_the_detectors_class_out_to_the_objects_edge():
    # A heatmap peak is ~0 a few cells from the centre; a mask pixel at the object's edge still needs its class.
    task = mk.tasks.DetectionTask("objects", classes=["a", "b"])
    det = keras.Input((16, 16, 2 + 4))
    reads = keras.Model(det, task.summary_for("mask", det, 0, spatial=True))
    x = np.zeros((1, 16, 16, 6), "float32")
    x[0, 8, 8, 1] = 0.9   # one object of class b, centred at (8, 8)
    y = reads(x).numpy()[0]
    assert y.shape == (16, 16, 4 * 6)
    b = [1, 7, 13, 19]   # class b in the map itself and in the 5-, 9- and 17-cell max-pools
    np.testing.assert_allclose(y[8, 10, b], [0, 0.9, 0.9, 0.9])   # 2 cells away
    np.testing.assert_allclose(y[8, 12, b], [0, 0, 0.9, 0.9])     # 4 cells away
    np.testing.assert_allclose(y[15, 8, b], [0, 0, 0, 0.9])       # 7 cells away
    assert not y[..., [0, 6, 12, 18]].any()   # class a: nowhere


def test_depends_on_flag_parses_and_names_the_mistake():
    assert parse_depends_on("shape=objects+mask", ["shape", "objects", "mask"]) == {"shape": ("objects", "mask")}
    assert parse_depends_on("", ["shape"]) == {}
    with pytest.raises(MtlError, match="malformed"):
        parse_depends_on("shape", ["shape"])
    with pytest.raises(MtlError, match="'mask', not trained here"):
        parse_depends_on("shape=mask", ["shape", "color"])
    # Without task names (compare before it has read the dataset) only the syntax is checked.
    assert parse_depends_on("shape=anything", None) == {"shape": ("anything",)}
    with pytest.raises(MtlError, match="malformed"):
        parse_depends_on("shape=", None)


def test_warmup_reaches_the_peak_rate_within_the_run():
    opt = make_optimizer("adamw", 3e-3, total_steps=40, warmup_steps=4)
    rates = [float(opt.learning_rate if not callable(opt._learning_rate) else opt._learning_rate(k)) for k in range(41)]
    assert max(rates) == pytest.approx(3e-3) and rates.index(max(rates)) == 4
    assert all(math.isfinite(r) and r >= 0 for r in rates)


def test_resuming_a_run_saved_before_the_recipe_flags_keeps_its_old_recipe(tmp_path):
    import argparse
    import json

    from mtl_keras.cli.train import add_arguments, load_resume_config

    p = argparse.ArgumentParser()
    add_arguments(p)
    old = vars(p.parse_args(["--out", str(tmp_path)]))
    for key in ("optimizer", "warmup", "label_smoothing", "weight_decay", "depends_on", "zero_init_residual"):
        del old[key]
    old["learning_rate"] = 1e-3
    (tmp_path / "config.json").write_text(json.dumps({"args": old}))
    args = load_resume_config(p.parse_args(["--out", str(tmp_path), "--resume"]))
    assert (args.optimizer, args.warmup, args.label_smoothing, args.learning_rate) == ("adam", 0.0, 0.0, 1e-3)
    assert args.weight_decay is None and args.depends_on == "" and args.zero_init_residual is False
    # A run saved with the flags keeps its own values.
    (tmp_path / "config.json").write_text(json.dumps({"args": {**old, "optimizer": "sgd", "warmup": 0.2}}))
    args = load_resume_config(p.parse_args(["--out", str(tmp_path), "--resume"]))
    assert (args.optimizer, args.warmup) == ("sgd", 0.2)
