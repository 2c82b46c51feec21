"""Depth: masked scale-invariant / L1 losses against their closed forms, the literature's metrics against
numpy, the scenes' depth label, the pipeline's flip, the demo's decoding and colours, the export's per-task
check, and a tiny shape + depth model that trains and reloads with safe_mode=True."""

import numpy as np
import pytest

import mtl_keras as mk
from demo import heads, scenes
from demo.draw import DEPTH_ANCHORS, annotate, depth_colors
from mtl_keras.errors import MtlError
from mtl_keras.tasks import TASK_TYPES, DepthTask
from mtl_keras.tasks.depth import AbsRel, DeltaAccuracy, DepthLoss, DepthRMSE


def _maps(seed=0, batch=2, size=8):
    """Targets in 1..10 with invalid pixels of every kind, and positive predictions."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(1.0, 10.0, (batch, size, size)).astype(np.float32)
    y[0, 0, :3] = 0.0, np.nan, -1.0
    y[-1, -1, -2:] = np.inf, 12.0  # beyond max_depth 10
    p = (y * rng.uniform(0.7, 1.4, y.shape)).astype(np.float32)
    p = np.nan_to_num(np.abs(p), nan=3.0, posinf=3.0) + 0.5
    return y, p[..., None]


def _valid(y):
    return np.isfinite(y) & (y > 0) & (y <= 10.0)


def _si_numpy(y, p, lam):
    """Eigen et al. 2014 per image, images weighted by their valid pixel count."""
    total, count = 0.0, 0
    for yi, pi in zip(y, p[..., 0]):
        v = _valid(yi)
        d = np.log(pi[v].astype(np.float64)) - np.log(yi[v].astype(np.float64))
        n = v.sum()
        total += n * (np.mean(d ** 2) - lam * np.mean(d) ** 2)
        count += n
    return total / count


def test_registered_with_the_other_task_types():
    assert TASK_TYPES["depth"] is DepthTask and mk.tasks.DepthTask is DepthTask


def test_scale_invariant_loss_is_its_closed_form_on_a_hand_made_image():
    y = np.array([[[1.0, 2.0], [4.0, 8.0]]], np.float32)
    p = np.full((1, 2, 2, 1), 2.0, np.float32)
    # d = log 2 · (1, 0, -1, -2): mean d² = 1.5 log²2, mean d = -0.5 log²2 -> 1.5 - 0.5 · 0.25 = 1.375 (× log²2).
    loss = DepthLoss(si_lambda=0.5)
    assert float(loss(y, p)) == pytest.approx(1.375 * np.log(2) ** 2, rel=1e-6)
    assert float(DepthLoss(si_lambda=0.0)(y, p)) == pytest.approx(1.5 * np.log(2) ** 2, rel=1e-6)
    ys, ps = _maps()
    assert float(DepthLoss(max_depth=10.0)(ys, ps)) == pytest.approx(_si_numpy(ys, ps, 0.5), rel=1e-5)


def test_scale_invariant_loss_ignores_a_global_scale_only_when_lambda_is_one():
    y, p = _maps(1)
    full, half = DepthLoss(si_lambda=1.0, max_depth=10.0), DepthLoss(si_lambda=0.5, max_depth=10.0)
    assert float(full(y, p * 3.0)) == pytest.approx(float(full(y, p)), rel=1e-4, abs=1e-6)
    assert float(half(y, p * 3.0)) > float(half(y, p)) + 0.1


@pytest.mark.parametrize("loss_type", ["scale_invariant", "l1"])
def test_invalid_pixels_change_nothing(loss_type):
    y, p = _maps(2)
    loss = DepthTask("depth", loss_type=loss_type).loss()
    before = float(loss(y, p))
    bad = ~_valid(y)
    assert bad.sum() == 5
    p2, y2 = p.copy(), y.copy()
    p2[bad] = 1e4  # a wild prediction where there is nothing to predict
    y2[bad] = np.where(np.isnan(y2[bad]), 0.0, np.nan)  # another way of saying "no depth"
    assert float(loss(y2, p2)) == pytest.approx(before, rel=1e-6)
    # The pipeline's pixel weights (encode) give the same value as the target's own mask.
    weights = np.stack([DepthTask("depth").encode(m, 8)[1].numpy() for m in y])
    assert float(loss(y, p, weights)) == pytest.approx(before, rel=1e-6)
    # A missing label (weight 0 for the whole image) leaves the other image's loss.
    alone = float(loss(y[1:], p[1:]))
    assert float(loss(y, p, weights * np.array([0.0, 1.0])[:, None, None])) == pytest.approx(alone, rel=1e-6)


def test_l1_is_the_mean_absolute_error_over_valid_pixels():
    y, p = _maps(3)
    v = _valid(y)
    expected = np.mean(np.abs(p[..., 0][v] - y[v]))
    assert float(DepthTask("depth", loss_type="l1").loss()(y, p)) == pytest.approx(expected, rel=1e-6)


def test_metrics_match_numpy_closed_forms():
    y, p = _maps(4, batch=3)
    w = np.ones(y.shape, np.float32)
    w[2] = 0.0  # a missing label: the third image counts nowhere
    keep = _valid(y) & (w > 0)
    t, q = y[keep].astype(np.float64), p[..., 0][keep].astype(np.float64)
    expected = {"abs_rel": np.mean(np.abs(q - t) / t), "rmse": np.sqrt(np.mean((q - t) ** 2)),
                "delta1": np.mean(np.maximum(q / t, t / q) < 1.25)}
    metrics = DepthTask("depth").metrics()
    for m in metrics:
        m.update_state(y, p, w)
    assert {m.name: float(m.result()) for m in metrics} == {k: pytest.approx(v, rel=1e-5) for k, v in expected.items()}
    assert 0.0 < expected["delta1"] < 1.0
    # Streaming over two halves gives the same numbers (pixel-pooled, not a mean of batch means).
    again = [AbsRel(max_depth=10.0), DepthRMSE(max_depth=10.0), DeltaAccuracy(max_depth=10.0)]
    for m in again:
        m.update_state(y[:1], p[:1], w[:1])
        m.update_state(y[1:], p[1:], w[1:])
    assert [float(m.result()) for m in again] == pytest.approx([float(m.result()) for m in metrics], rel=1e-5)


def test_encode_weights_only_measured_pixels():
    label = np.array([[2.0, 0.0, np.nan], [-3.0, 10.0, 10.5], [np.inf, 1.0, 4.0]], np.float32)
    target, weight = DepthTask("depth").encode(label[..., None], 3)
    assert weight.numpy().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert target.numpy().tolist() == [[2, 0, 0], [0, 10, 0], [0, 1, 4]]
    _, uncapped = DepthTask("depth", max_depth=None).encode(label, 3)
    assert uncapped.numpy()[1, 2] == 1.0


def test_bad_settings_are_clear_errors():
    with pytest.raises(MtlError, match="unknown loss type of depth task 'depth': 'l2'; available: l1, scale_invariant"):
        DepthTask("depth", loss_type="l2")
    with pytest.raises(MtlError, match="si_lambda must be in \\[0, 1\\], got 1.5"):
        DepthTask("depth", si_lambda=1.5)
    with pytest.raises(MtlError, match="max_depth must be a positive number or None"):
        DepthTask("depth", max_depth=0)
    with pytest.raises(MtlError, match="target of depth task 'depth' must be 'predicted' or 'label'"):
        DepthTask("depth").gradcam_score(np.zeros((1, 4, 4, 1), np.float32), None, "circle")


# ----- the scenes' depth task (the label itself: tests/test_scenes.py) --------------------------
def test_scene_depth_is_deterministic_and_leaves_the_other_labels():
    a = scenes.render_scene(seed=2, split="val", index=4, image_size=32)
    b = scenes.render_scene(seed=2, split="val", index=4, image_size=32)
    assert np.array_equal(a.labels["depth"], b.labels["depth"])
    assert scenes.label_names("shapes")[-1] == "depth" and set(a.labels) == set(scenes.label_names("shapes"))
    src = mk.data.scenes.ScenesSource("shapes")
    task = src.tasks()["depth"]
    assert isinstance(task, DepthTask) and task.max_depth >= 10.0


def test_pipeline_flips_and_keeps_depth_with_the_image():
    from mtl_keras.data.pipeline import BoxAwareFlip, resize_example

    image = np.zeros((8, 8, 3), np.float32)
    image[:, :4] = 255.0
    depth = np.tile(np.linspace(1.0, 8.75, 8, dtype=np.float32), (8, 1))  # fractional: must not be rounded
    ex = {"image": image, "labels": {"d": depth}}
    tasks = [DepthTask("d")]
    flips = 0
    for seed in range(6):
        out = BoxAwareFlip(seed=seed, tasks=tasks)(ex)
        flipped = float(out["image"][0, 0, 0]) == 0.0
        expect = depth[:, ::-1] if flipped else depth
        np.testing.assert_allclose(out["labels"]["d"].numpy(), expect, rtol=1e-6)
        flips += flipped
    assert 0 < flips < 6
    # Resized nearest: unmeasured pixels neither spread nor blend into their neighbours.
    big = np.full((16, 16), 5.0, np.float32)
    big[:8, :8] = 0.0
    small = resize_example({"image": np.zeros((16, 16, 3), np.uint8), "labels": {"d": big[..., None]}}, 8, tasks)
    assert sorted(np.unique(small["labels"]["d"].numpy()).tolist()) == [0.0, 5.0]


# ----- the device side (numpy only) -------------------------------------------------------------------
def test_demo_decodes_and_colours_a_depth_map():
    out = np.tile(np.linspace(9.0, 3.0, 16, dtype=np.float32)[:, None, None], (1, 16, 1))
    out[4:12, 4:12] = 1.5  # the middle half
    out[0, 0] = np.nan
    entry = {"name": "depth", "kind": "depth", "decoding": DepthTask("depth").card_decoding()}
    found = heads.decode(entry, out)
    assert found["nearest"] == 1.5 and found["farthest"] == 9.0 and found["centre"] == pytest.approx(1.5)
    assert found["depth"].shape == (16, 16) and found["depth"][0, 0] == 0.0
    assert heads.decode({**entry, "decoding": {"max_depth": 5.0}}, out)["farthest"] == 5.0
    assert heads.depth_millimetres(found["depth"])[7, 7] == 1500

    rgb = depth_colors(found["depth"])
    near, far = rgb[7, 7].astype(int), rgb[1, 8].astype(int)
    assert near[0] > near[2] + 50 and far[2] > far[0] + 50  # near warm, far cool
    assert rgb[0, 0].tolist() == [0, 0, 0]  # no depth: black
    # Monotone in the warm-cool sense: the red share never falls as pixels get nearer.
    ramp = depth_colors(np.linspace(10.0, 1.0, 50)[None], near=1.0, far=10.0)[0].astype(float)
    warmth = ramp[:, 0] - ramp[:, 2]
    assert warmth[-1] - warmth[0] > 100 and ramp.tolist()[0] == DEPTH_ANCHORS[0].tolist()

    picture, drawn = annotate(np.full((16, 16, 3), 90, np.uint8), [entry], {"depth": found})
    x0, y0, x1, y1 = drawn["depth"]["xyxy"]
    assert (x0, x1) == (384, 768) and picture.size[0] == 768
    px = np.asarray(picture)
    assert px[y1 // 2, (x0 + x1) // 2, 0] > px[y1 // 2, (x0 + x1) // 2, 2]  # the nearer centre is warm
    assert drawn["depth"]["caption"].startswith("depth: 1.50-9.00m, centre 1.50m")


def test_library_decoding_is_the_device_decoding_and_json_safe():
    ex = DepthTask.example(8)
    ours = ex.task.decode(ex.output)
    theirs = heads.decode({"name": "depth", "kind": "depth", "decoding": ex.task.card_decoding()}, ex.output)
    assert ours == {**theirs, "depth": theirs["depth"].tolist()}
    assert ours["nearest"] == pytest.approx(2.0) and len(ours["depth"]) == 8


# ----- export: the card and the int8 check ----------------------------------------------------------
def test_card_and_int8_check_use_the_depth_numbers():
    from export.card import new_card
    from export.evaluator import evaluate_outputs
    from export.report import drop_hints, parse_floor

    task = DepthTask("depth", max_depth=80.0)
    entry = new_card([task], 32, {})["tasks"][0]
    assert entry["decoding"] == {"max_depth": 80.0, "units": "m"} and entry["primary_metric"] == "abs_rel"
    y, p = _maps(5)
    w = np.stack([task.encode(m, 8)[1].numpy() for m in y])
    targets = np.where(w > 0, y, 0.0)
    keras_scores = evaluate_outputs([task], {"depth": targets}, {"depth": p}, {"depth": w})["depth"]
    int8_scores = evaluate_outputs([task], {"depth": targets}, {"depth": p * 1.01}, {"depth": w})["depth"]
    assert set(keras_scores) == {"abs_rel", "rmse", "delta1"}
    assert drop_hints([task], {"depth": keras_scores}, {"depth": int8_scores}) == []
    worse = {"depth": {**keras_scores, "abs_rel": keras_scores["abs_rel"] + 0.03}}
    assert drop_hints([task], {"depth": keras_scores}, worse) == ["depth"]
    assert parse_floor("depth=0.2", [task]).describe() == "depth abs_rel <= 0.2"
    assert parse_floor("depth.rmse=0.5", [task]).describe() == "depth rmse <= 0.5"


def test_centre_nearness_score_rises_when_the_centre_comes_nearer():
    from mtl_keras.explain import scores

    task = DepthTask("depth")
    raw = np.zeros((2, 8, 8, 1), np.float32)
    raw[1, 2:6, 2:6] = np.log(0.5)  # log-depth: the second image's centre is nearer
    s = scores.build_score(task, raw)
    values = np.asarray(s(raw))
    assert s.targets == ["centre", "centre"] and values[1] > values[0] + 0.5


# ----- a tiny model --------------------------------------------------------------------------------
def test_tiny_shape_and_depth_model_trains_and_reloads(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    tasks = mk.data.tasks_for("shapes", names=["shape", "depth"])
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=32)
    assert tuple(model.output["depth"].shape) == (None, 32, 32, 1)
    # Eager: tracing the train step would cost several times these three small steps.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    data = mk.data.load("shapes", "train", image_size=32, batch_size=8, tasks=tasks, size=8, augment=False)
    x, y, w = next(iter(data))
    history = model.fit(x, y, sample_weight=w, epochs=3, batch_size=8, verbose=0).history
    losses = history["depth_loss"]
    assert np.isfinite(losses).all() and np.all(np.diff(losses) < 0) and losses[-1] < 0.7 * losses[0]
    assert np.isfinite(history["depth_abs_rel"]).all()
    path = tmp_path / "depth.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again(x)["depth"], model(x)["depth"], rtol=1e-5)
    assert again.task("depth") == model.task("depth")
    assert min(float(np.min(model(x)["depth"])), 1.0) > 0.0
