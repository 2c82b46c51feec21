"""The model contract: named outputs, Keras loss weights, masking, save/load, flat trunk."""

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.errors import MtlError

NAMES = ["shape", "color", "present", "box", "count"]


@pytest.fixture(scope="module")
def tasks():
    return mk.data.tasks_for("shapes", names=NAMES)


@pytest.fixture(scope="module")
def small_model(tasks):
    return mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=64)


@pytest.fixture(scope="module")
def batch(tasks):
    ds = mk.data.load("shapes", split="val", image_size=64, batch_size=8, size=8, tasks=tasks)
    return next(iter(ds))


def test_resnet50_default_has_named_outputs_and_flat_trunk(tasks):
    model = mk.build_model(tasks, image_size=64)
    assert sorted(model.output_names) == sorted(NAMES)
    assert model.input.name == "image" or model.inputs[0].name == "image"
    # Flat, not nested: Grad-CAM reaches trunk layers by name.
    assert model.get_layer("conv5_block3_out").output.shape[1:3] == (2, 2)
    assert not [l for l in model.layers if isinstance(l, keras.Model)]
    out = model(np.zeros((2, 64, 64, 3), "float32"))
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {"shape": (2, 6), "color": (2, 6), "present": (2, 6), "box": (2, 4), "count": (2, 1)}
    for name in NAMES:
        assert model.get_layer(name).name == name


def test_outputs_respect_their_types(small_model, batch):
    out = small_model(batch[0])
    np.testing.assert_allclose(np.sum(out["shape"], axis=1), 1.0, rtol=1e-5)
    box = np.asarray(out["box"])
    assert np.all(box[:, 2] >= box[:, 0]) and np.all(box[:, 3] >= box[:, 1])
    assert np.all((box >= 0) & (box <= 1))
    assert np.all((np.asarray(out["present"]) >= 0) & (np.asarray(out["present"]) <= 1))


def test_loss_weights_combine_as_keras_defines(small_model, batch):
    x, y, w = batch
    small_model.compile(optimizer="adam")
    plain = small_model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    small_model.compile(optimizer="adam", loss_weights={"box": 5.0, "count": 0.5})
    weighted = small_model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    for name in NAMES:  # per-task losses are unweighted and unchanged
        assert weighted[f"{name}_loss"] == pytest.approx(plain[f"{name}_loss"], rel=1e-5)
    expected = sum(plain[f"{n}_loss"] * {"box": 5.0, "count": 0.5}.get(n, 1.0) for n in NAMES)
    assert weighted["loss"] == pytest.approx(expected, rel=1e-4)
    assert plain["loss"] == pytest.approx(sum(plain[f"{n}_loss"] for n in NAMES), rel=1e-4)


@pytest.mark.parametrize(
    "weights, message",
    [({"colour": 1.0}, "not a task of this model"), ({"box": -1.0}, "finite and >= 0"), ({"box": "x"}, "must be a number")],
)
def test_bad_loss_weights_are_named(small_model, weights, message):
    with pytest.raises(MtlError, match=message):
        small_model.compile(optimizer="adam", loss_weights=weights)


def test_missing_label_is_masked_without_touching_other_tasks(small_model, batch):
    x, y, w = batch
    small_model.compile(optimizer="adam")
    full = small_model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    w2 = {k: np.array(v) for k, v in w.items()}
    w2["box"][:4] = 0.0  # the first half has no box label
    partial = small_model.evaluate(x, y, sample_weight=w2, verbose=0, return_dict=True)
    for name in ["shape", "color", "present", "count"]:
        assert partial[f"{name}_loss"] == pytest.approx(full[f"{name}_loss"], rel=1e-5)
    # The box loss is the masked mean over the labelled half only.
    x_half = {k: np.array(v)[4:] for k, v in y.items()}
    half = small_model.evaluate(np.array(x)[4:], x_half, verbose=0, return_dict=True)
    assert partial["box_loss"] == pytest.approx(half["box_loss"], rel=1e-4)
    assert partial["box_iou"] == pytest.approx(half["box_iou"], rel=1e-4)


def test_save_load_safe_mode_gives_identical_outputs(tmp_path, small_model, batch):
    small_model.compile(optimizer="adam", loss_weights={"box": 5.0})
    path = tmp_path / "m.keras"
    small_model.save(path)
    loaded = mk.load_model(path)
    assert [t.get_config() for t in loaded.tasks] == [t.get_config() for t in small_model.tasks]
    a, b = small_model.predict(batch[0], verbose=0), loaded.predict(batch[0], verbose=0)
    for name in NAMES:
        np.testing.assert_array_equal(a[name], b[name])
    assert not [l for l in loaded.layers if isinstance(l, keras.layers.Lambda)]
    # Compile state survives: the weighted total is reproduced.
    x, y, w = batch
    e1 = small_model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)["loss"]
    e2 = loaded.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)["loss"]
    assert e2 == pytest.approx(e1, rel=1e-5)


def test_load_refuses_files_of_the_wrong_kind(tmp_path):
    bad = tmp_path / "notes.keras"
    bad.write_text("not a zip")
    with pytest.raises(MtlError, match="not a .keras model file"):
        mk.load_model(bad)
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(MtlError, match="not an mtl_keras multi-task model"):
        mk.load_model(tmp_path / "plain.keras")


def test_lambda_models_are_refused_in_safe_mode(tmp_path):
    i = keras.Input((2,))
    m = keras.Model(i, keras.layers.Lambda(lambda t: t * 2)(i))
    m.save(tmp_path / "lam.keras")
    with pytest.raises(MtlError, match="safe mode"):
        mk.load_model(tmp_path / "lam.keras")


def test_branch_point_and_depends_on(tmp_path, batch):
    ts = mk.data.tasks_for("shapes", names=["shape", "color"])
    ts[1].depends_on = ("shape",)
    model = mk.build_model(ts, trunk="mobilenet_v3_small", image_size=64, branch_point="c4")
    branches = sorted(l.name for l in model.layers if isinstance(l, keras.Model))
    assert branches == ["color_branch", "shape_branch"]
    # The dependent head really reads the other task's output.
    assert "shape" in [n.operation.name for n in model.get_layer("color_with_deps")._inbound_nodes[0].parent_nodes]
    model.save(tmp_path / "b.keras")
    loaded = mk.load_model(tmp_path / "b.keras")
    np.testing.assert_array_equal(model.predict(batch[0], verbose=0)["color"], loaded.predict(batch[0], verbose=0)["color"])


def test_build_errors_are_clear(tasks):
    with pytest.raises(MtlError, match="unknown trunk 'vgg'"):
        mk.build_model(tasks, trunk="vgg")
    with pytest.raises(MtlError, match="at least 32"):
        mk.build_model(tasks, image_size=16)
    with pytest.raises(MtlError, match="multiple of 32"):
        mk.build_model(tasks, image_size=70)
    with pytest.raises(MtlError, match="two tasks are named"):
        mk.build_model([tasks[0], tasks[0]])
    with pytest.raises(MtlError, match="has no label for task 'colour'"):
        mk.data.tasks_for("shapes", names=["colour"])
    with pytest.raises(MtlError, match="unknown dataset 'cifar'"):
        mk.data.tasks_for("cifar")
