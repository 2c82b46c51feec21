"""Δm on known numbers, the comparison table, and ``mtl-keras compare`` end to end (tiny budget), over seeds."""

import json

import keras
import numpy as np
import pytest

import mtl_keras as mk
from mtl_keras.cli import main
from mtl_keras.evaluate.delta_m import delta_m, format_table
from mtl_keras.errors import MtlError
from mtl_keras.train.recipe import DEFAULTS as RECIPE_DEFAULTS


def test_delta_m_on_known_numbers():
    single = {"shape": 0.80, "count": 0.50, "box": 0.40}
    up = {"shape": True, "count": False, "box": True}
    # shape +10 %, count (lower is better) 0.50 -> 0.55 is -10 %, box +25 %: mean +8.33 %
    assert delta_m({"shape": 0.88, "count": 0.55, "box": 0.50}, single, up) == pytest.approx(25 / 3, abs=1e-6)
    assert delta_m(single, single, up) == 0.0
    # A lower error is an improvement.
    assert delta_m({"count": 0.25}, {"count": 0.5}, {"count": False}) == pytest.approx(50.0)


def test_delta_m_refuses_what_it_cannot_compute():
    with pytest.raises(MtlError, match="is 0"):
        delta_m({"count": 0.1}, {"count": 0.0}, {"count": False})
    with pytest.raises(MtlError, match="no multi-task result"):
        delta_m({}, {"shape": 0.5}, {"shape": True})
    with pytest.raises(MtlError, match="non-finite"):
        delta_m({"shape": float("nan")}, {"shape": 0.5}, {"shape": True})


def test_table_lists_every_run_and_direction():
    result = {
        "tasks": ["shape", "count"], "metric": {"shape": "accuracy", "count": "mae"},
        "higher_is_better": {"shape": True, "count": False},
        "single": {"shape": 0.8, "count": 0.5},
        "multi": {"static": {"shape": 0.7, "count": 0.5}, "uncertainty": {"shape": 0.9, "count": 0.4}},
        "delta_m": {"static": -6.25, "uncertainty": 16.25},
    }
    lines = format_table(result).splitlines()
    assert lines[0] == "| run | shape accuracy ↑ | count mae ↓ | Δm % |"
    assert lines[3] == "| static | 0.7000 | 0.5000 | -6.25 |"
    assert lines[4] == "| uncertainty | 0.9000 | 0.4000 | +16.25 |"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--balancers", "static,softmax"], "unknown balancer 'softmax'"),
        (["--tasks", "shape"], "at least two tasks"),
        (["--scale-task", "box=lots"], "not a number"),
        (["--scale-task", "colour=10"], "not a task here"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--seeds", "0"], "--seeds must be a positive integer"),
        (["--seeds", "-3"], "--seeds must be a positive integer"),
        (["--warmup", "1"], "--warmup is a fraction"),
        (["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1)"),
        (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["--depends-on", "shape=mask"], "--depends-on names 'mask', not trained here"),
        (["--depends-on", "shape"], "malformed --depends-on entry 'shape'"),
        (["--depends-on", "shape=box", "--dependencies-only", "box"], "'box', which has no --depends-on entry"),
    ],
)
def test_compare_bad_input_is_one_clear_line(argv, message, tmp_path, capsys):
    base = ["compare", "--tasks", "shape,box", "--out", str(tmp_path / "c")]
    args = base + argv if argv[0] != "--tasks" else ["compare", *argv, "--out", str(tmp_path / "c")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def tiny_build_model(tasks, trunk=None, image_size=32, weights=None, **_):
    """A few small convs under the real heads: compare's logic does not depend on the trunk."""
    image = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(image)
    taps = {}
    for i in range(5):
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
        taps[f"c{i + 1}"] = x
    features = {**taps, "pooled": keras.layers.GlobalAveragePooling2D()(x)}
    return mk.MultiTaskModel(inputs=image, outputs={t.name: t.head(features) for t in tasks}, tasks=tasks)


def test_compare_trains_baselines_and_balanced_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("mtl_keras.model.build_model", tiny_build_model)
    out = tmp_path / "cmp"
    argv = ["compare", "--data", "shapes", "--tasks", "count,box", "--balancers", "static,uncertainty",
            "--image-size", "32", "--epochs", "1", "--batch-size", "8",
            "--train-size", "16", "--eval-size", "8", "--scale-task", "count=10", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "compare.json").read_text())
    assert set(result["single"]) == {"count", "box"} and list(result["multi"]) == ["static", "uncertainty"]
    # Single-task runs really train one task; the multi-task run trains both and logs its weights.
    assert set(result["runs"]["single:count"]["history"]) == {"loss", "mae", "images_per_second"}
    assert {"weight_count", "weight_box"} <= set(result["runs"]["multi:uncertainty"]["history"])
    assert "weight_box" not in result["runs"]["multi:static"]["history"]
    for name in ("static", "uncertainty"):
        assert result["delta_m"][name] == pytest.approx(
            delta_m(result["multi"][name], result["single"], result["higher_is_better"])
        )
    # The scale reaches the loss: count's logged loss is 10x its unweighted per-output loss.
    history = result["runs"]["multi:static"]["history"]
    assert history["loss"][0] == pytest.approx(10 * history["count_loss"][0] + history["box_loss"][0], rel=1e-4)
    assert result["loss_scale"] == {"count": 10.0}
    table = (out / "compare.md").read_text()
    assert "| single-task |" in table and "| uncertainty |" in table
    assert "| uncertainty |" in capsys.readouterr().out
    # The speed column: each run's images/s, relative to the static multi-task run.
    rates = result["images_per_second"]
    assert rates["static"] > 0 and rates["uncertainty"] > 0
    row = next(line for line in table.splitlines() if line.startswith("| uncertainty |"))
    assert "step time ÷ static" in table and row.endswith(f" {rates['static'] / rates['uncertainty']:.2f} |")


def test_balancers_all_and_levels():
    from mtl_keras.balancing import BALANCERS
    from mtl_keras.balancing import get_balancer
    from mtl_keras.evaluate.compare import balancer_names

    names = balancer_names("all")
    assert names[0] == "static" and sorted(names) == sorted(BALANCERS)
    assert get_balancer("MGDA@parameters").grad_level == "parameters"
    with pytest.raises(MtlError, match="has no gradient level"):
        balancer_names("dwa@features")
    with pytest.raises(MtlError, match="unknown gradient level 'trunk'"):
        balancer_names("pcgrad@trunk")
    with pytest.raises(MtlError, match="unknown balancer 'mgda2'"):
        balancer_names("static,mgda2")


def test_compare_keeps_results_when_delta_m_is_undefined():
    result = {
        "tasks": ["shape"], "metric": {"shape": "accuracy"}, "higher_is_better": {"shape": True},
        "single": {"shape": 0.0}, "multi": {"static": {"shape": 0.5}}, "delta_m": {"static": None},
    }
    assert format_table(result).splitlines()[-1] == "| static | 0.5000 | n/a |"


def test_compare_refuses_bad_seed_count_before_training():
    from mtl_keras.evaluate.compare import compare

    with pytest.raises(MtlError, match="seeds must be a positive integer"):
        compare("shapes", ["shape", "box"], ["static"], seeds=0)


def test_seed_statistics_and_table_on_known_numbers(monkeypatch):
    """Aggregation over seeds without training: each run's metrics depend on the seed in a known way."""
    import mtl_keras.evaluate.compare as cmp

    calls = []

    def fake_run(tasks, balancer, load_train, evaluation, settings, loss_scale, seed):
        calls.append({"tasks": [t.name for t in tasks], "balancer": balancer, "seed": seed, "settings": settings,
                      "smoothing": {t.name: getattr(t, "label_smoothing", None) for t in tasks}})
        k = seed - 3
        if len(tasks) == 1:  # the single-task baselines do not move with the seed
            metrics = {"shape": 0.5, "count": 0.2}
        else:  # shape +10 %, +20 %, +30 %; count unchanged: Δm 5, 10, 15
            metrics = {"shape": 0.5 * (1.1 + 0.1 * k), "count": 0.2}
        return {"seed": seed, "metrics": {t.name: metrics[t.name] for t in tasks}, "seconds": 0.0,
                "history": {}, "weights": None}

    monkeypatch.setattr(cmp, "_train_and_score", fake_run)
    r = cmp.compare("shapes", ["shape", "count"], ["static"], seed=3, seeds=3, optimizer="sgd", warmup=0.1,
                    label_smoothing=0.1, log=lambda line: None)
    assert r["seeds"] == [3, 4, 5] and sorted({c["seed"] for c in calls}) == [3, 4, 5]
    assert all(c["settings"]["optimizer"] == "sgd" and c["settings"]["warmup"] == 0.1 for c in calls)
    # Label smoothing reaches the classification task only.
    assert {c["smoothing"]["shape"] for c in calls if "shape" in c["tasks"]} == {0.1}
    assert r["per_seed"]["delta_m"]["static"] == pytest.approx([5.0, 10.0, 15.0])
    stats = r["delta_m_stats"]["static"]
    assert stats["mean"] == pytest.approx(10.0) and stats["std"] == pytest.approx(5.0)
    assert stats["se"] == pytest.approx(5.0 / np.sqrt(3), abs=1e-6) and stats["significant"] is True
    assert r["delta_m"]["static"] == pytest.approx(10.0)
    assert r["std"]["single"] == {"shape": 0.0, "count": 0.0}
    assert set(r["runs"]) == {f"{k}@seed{s}" for k in ("single:shape", "single:count", "multi:static")
                              for s in (3, 4, 5)}
    lines = format_table(r).splitlines()
    assert lines[3] == "| static | 0.6000 ± 0.0500 | 0.2000 ± 0.0000 | +10.00 ± 2.89 |"
    assert lines[-1].startswith("3 seeds (3, 4, 5)") and "Δm > 2 SE: static" in lines[-1]
    assert "No task is worse" in lines[-1]


def test_depends_on_reaches_the_multi_task_runs_only(monkeypatch):
    """``shape=objects``: the multi-task model's shape head reads the detector; its baseline cannot, it trains alone."""
    import mtl_keras.evaluate.compare as cmp

    seen, shared = [], []

    def fake_run(tasks, balancer, load_train, evaluation, settings, loss_scale, seed):
        seen.append({t.name: t.depends_on for t in tasks})
        shared.append({t.name: t.shared_features for t in tasks})
        return {"seed": seed, "metrics": {t.name: 0.5 for t in tasks}, "seconds": 0.0, "history": {}, "weights": None}

    monkeypatch.setattr(cmp, "_train_and_score", fake_run)
    r = cmp.compare("shapes", ["shape", "color", "objects"], ["static", "dwa"], depends_on={"shape": ["objects"]},
                    dependencies_only=("shape",), eval_size=4, log=lambda line: None)
    singles, multis = [s for s in seen if len(s) == 1], [s for s in seen if len(s) == 3]
    assert {"shape": ()} in singles and len(singles) == 3 and len(multis) == 2
    assert all(m["shape"] == ("objects",) and m["color"] == () for m in multis)
    assert r["budget"]["depends_on"] == {"shape": ["objects"]} and r["budget"]["dependencies_only"] == ["shape"]
    # --dependencies-only: the multi-task shape head reads only the detector; its baseline, alone, the features.
    assert {"shape": True} in shared and all(m["shape"] is False and m["color"] is True for m in shared if len(m) == 3)
    with pytest.raises(MtlError, match="dependencies_only names 'color', which depends on no task here"):
        cmp.compare("shapes", ["shape", "color"], ["static"], depends_on={"shape": ["color"]},
                    dependencies_only=("color",), eval_size=4)
    with pytest.raises(MtlError, match="depends_on names 'mask', not compared here"):
        cmp.compare("shapes", ["shape", "color"], ["static"], depends_on={"shape": ["mask"]}, eval_size=4)


def test_one_seed_has_no_spread():
    from mtl_keras.evaluate.delta_m import delta_m_summary, seed_summary

    assert seed_summary([0.7]) == {"mean": 0.7, "std": None, "se": None, "n": 1}
    assert delta_m_summary([3.0])["significant"] is None
    # An undefined Δm in any seed leaves no mean: averaging the defined seeds only would select them.
    assert delta_m_summary([3.0, None])["mean"] is None


def tiny_build_model_spy(record):
    def build(tasks, trunk=None, image_size=32, weights=None, **kwargs):
        model = tiny_build_model(tasks, trunk, image_size, weights)
        first_conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
        record.append({"tasks": [t.name for t in tasks], "kwargs": kwargs,
                       "kernel": np.array(first_conv.kernel.numpy())})
        return model

    return build


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """``mtl-keras compare --seeds 2`` on a tiny model, with spies on the data, model and optimizer."""
    import mtl_keras.train.recipe as recipe

    builds, loads, optimizers = [], [], []
    real_load, real_optimizer = mk.data.load, recipe.make_optimizer

    def load(name, split="train", *args, **kwargs):
        ds = real_load(name, split, *args, **kwargs)
        loads.append({"split": split, "seed": kwargs.get("seed"), "steps": int(ds.cardinality())})
        return ds

    def make_optimizer(*args, **kwargs):
        optimizers.append((args, kwargs))
        return real_optimizer(*args, **kwargs)

    out = tmp_path_factory.mktemp("seeds") / "cmp"
    argv = ["compare", "--data", "shapes", "--tasks", "count,box", "--balancers", "static",
            "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--train-size", "16", "--eval-size", "8",
            "--warmup", "0.5", "--seeds", "2", "--out", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mtl_keras.model.build_model", tiny_build_model_spy(builds))
        mp.setattr(mk.data, "load", load)
        mp.setattr(recipe, "make_optimizer", make_optimizer)
        assert main(argv) == 0
    result = json.loads((out / "compare.json").read_text())
    return {"result": result, "table": (out / "compare.md").read_text(), "builds": builds, "loads": loads,
            "optimizers": optimizers}


def test_seeds_keep_every_number_and_summarize_them(two_seeds):
    r = two_seeds["result"]
    per_seed, up = r["per_seed"], r["higher_is_better"]
    assert r["seeds"] == [0, 1] and r["budget"]["seeds"] == 2
    for task in ("count", "box"):
        values = per_seed["single"][task]
        assert len(values) == 2
        assert r["single"][task] == pytest.approx(np.mean(values))
        assert r["std"]["single"][task] == pytest.approx(np.std(values, ddof=1))
        values = per_seed["multi"]["static"][task]
        assert len(values) == 2
        assert r["multi"]["static"][task] == pytest.approx(np.mean(values))
        assert r["std"]["multi"]["static"][task] == pytest.approx(np.std(values, ddof=1))
    # Δm of seed s: that seed's multi-task run against that seed's single-task runs.
    dms = per_seed["delta_m"]["static"]
    for i in range(2):
        single = {t: per_seed["single"][t][i] for t in r["tasks"]}
        multi = {t: per_seed["multi"]["static"][t][i] for t in r["tasks"]}
        assert dms[i] == pytest.approx(delta_m(multi, single, up))
    stats = r["delta_m_stats"]["static"]
    assert stats["mean"] == pytest.approx(np.mean(dms), abs=1e-5) == r["delta_m"]["static"]
    assert stats["std"] == pytest.approx(np.std(dms, ddof=1), abs=1e-5)
    assert stats["se"] == pytest.approx(np.std(dms, ddof=1) / np.sqrt(2), abs=1e-5)
    assert stats["significant"] == (stats["mean"] > 2 * stats["se"])
    # Every run of every seed is kept, with its own history.
    assert {run["seed"] for key, run in r["runs"].items() if key.startswith("single:count@")} == {0, 1}
    table = two_seeds["table"]
    row = next(line for line in table.splitlines() if line.startswith("| static |"))
    assert row.count(" ± ") == 3  # two task cells and Δm
    assert "| single-task | " in table and " ± " in table.split("| single-task | ")[1].splitlines()[0]
    assert "2 seeds (0, 1)" in table


def test_seeds_reach_the_training_data_and_the_init(two_seeds):
    loads, builds, r = two_seeds["loads"], two_seeds["builds"], two_seeds["result"]
    # Every run loads its training data with its own seed; the evaluation split is loaded once, for all.
    assert [x["seed"] for x in loads if x["split"] == "train"] == [0, 0, 0, 1, 1, 1]
    assert [x["split"] for x in loads].count("val") == 1
    assert all(b["kwargs"].get("zero_init_residual") is True for b in builds)
    # Within a seed every run starts from the same trunk; across seeds the trunks differ.
    kernels = [b["kernel"] for b in builds]
    assert np.array_equal(kernels[0], kernels[1]) and np.array_equal(kernels[0], kernels[2])
    assert np.array_equal(kernels[3], kernels[5]) and not np.array_equal(kernels[0], kernels[3])
    # And the trained results differ too.
    for key in ("single:count", "multi:static"):
        assert r["runs"][f"{key}@seed0"]["history"]["loss"] != r["runs"][f"{key}@seed1"]["history"]["loss"]
    assert r["per_seed"]["single"]["count"][0] != r["per_seed"]["single"]["count"][1]
    # The recipe's optimizer spans the run: 2 steps a run (16 examples, batch 8, 1 epoch), half warm-up.
    assert {x["steps"] for x in loads if x["split"] == "train"} == {2}
    for args, kwargs in two_seeds["optimizers"]:
        assert args[:2] == ("adamw", RECIPE_DEFAULTS["learning_rate"]) and kwargs["total_steps"] == 2 and kwargs["warmup_steps"] == 1
