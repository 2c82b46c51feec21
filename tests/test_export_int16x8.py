"""int16x8 (16-bit activations) on a trunk it converts on: validated per task by the export, run by the demo."""

import json
import os

import numpy as np
import pytest

from export_fixture import INT16_TASKS, INT16_TRUNK, int16x8_run


@pytest.fixture(scope="session")
def run16(tmp_path_factory):
    return int16x8_run(tmp_path_factory.mktemp("export16"))


def test_int16x8_converts_and_is_scored_per_task(run16):
    report = run16["report"]
    [entry] = report["formats"]
    assert entry["mode"] == "int16x8" and entry["status"] == "ok", entry.get("reason")
    assert os.path.isfile(os.path.join(run16["export"], "model_int16x8.tflite"))
    assert not [o for o in entry["ops"] if o.startswith("Flex") or o == "CUSTOM"]
    # One metric row per task, with the metric and on the images the Keras model was scored on.
    for t in report["tasks"]:
        assert t["metric"] in entry["metrics"][t["name"]]
        assert np.isfinite(entry["metrics"][t["name"]][t["metric"]])
    assert sorted(entry["delta"]) == sorted(INT16_TASKS)
    # 16-bit activations follow the float model closely, head by head (probabilities and box corners in
    # [0, 1]; the count regression spans about +-1 on these images).
    assert set(entry["parity_per_task"]) == set(INT16_TASKS)
    for task, err in entry["parity_per_task"].items():
        assert err < (0.1 if task == "count" else 0.05), (task, err)
    with open(os.path.join(run16["export"], "model_card.json")) as f:
        card = json.load(f)
    assert card["files"]["model_int16x8.tflite"]["mode"] == "int16x8"
    assert card["source"]["trunk"] == INT16_TRUNK
    with open(os.path.join(run16["export"], "report.md")) as f:
        assert "int16x8" in f.read()


def test_int16x8_runs_in_the_demo(run16, tmp_path, capsys):
    from demo.__main__ import main

    model = os.path.join(run16["export"], "model_int16x8.tflite")
    assert main([model, "--samples", "2", "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "predictions.json").read_text())
    assert doc["mode"] == "int16x8" and len(doc["images"]) == 2
    for rec in doc["images"]:
        assert sorted(rec["tasks"]) == sorted(INT16_TASKS)
