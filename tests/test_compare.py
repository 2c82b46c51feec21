"""Δm on known numbers, the comparison table, and ``mtl-keras compare`` end to end (tiny budget)."""

import json

import keras
import pytest

import mtl_keras as mk
from mtl_keras.cli import main
from mtl_keras.compare import delta_m, format_table
from mtl_keras.errors import MtlError


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
    monkeypatch.setattr(mk, "build_model", tiny_build_model)
    out = tmp_path / "cmp"
    argv = ["compare", "--data", "shapes", "--tasks", "count,box", "--balancers", "static,uncertainty",
            "--image-size", "32", "--epochs", "1", "--batch-size", "8",
            "--train-size", "16", "--eval-size", "8", "--scale-task", "count=10", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "compare.json").read_text())
    assert set(result["single"]) == {"count", "box"} and list(result["multi"]) == ["static", "uncertainty"]
    # Single-task runs really train one task; the multi-task run trains both and logs its weights.
    assert set(result["runs"]["single:count"]["history"]) == {"loss", "mae"}
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


def test_compare_keeps_results_when_delta_m_is_undefined():
    result = {
        "tasks": ["shape"], "metric": {"shape": "accuracy"}, "higher_is_better": {"shape": True},
        "single": {"shape": 0.0}, "multi": {"static": {"shape": 0.5}}, "delta_m": {"static": None},
    }
    assert format_table(result).splitlines()[-1] == "| static | 0.5000 | n/a |"
