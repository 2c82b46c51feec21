"""The mtl-keras command line, end to end at a tiny size."""

import csv
import json

import pytest

from mtl_keras.cli import main

TINY = ["--data", "shapes", "--trunk", "mobilenet_v3_small", "--image-size", "32", "--epochs", "2",
        "--batch-size", "8", "--train-size", "16", "--val-size", "8", "--test-size", "8"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "x"
    status = main(["train", *TINY, "--tasks", "shape,color,box", "--loss-weights", "box=5", "--out", str(out)])
    assert status == 0
    return out


def test_train_writes_every_artifact(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {"model.keras", "history.csv", "config.json", "metrics.json", "logs"}
    assert not (run_dir / "backup").exists()
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"shape_loss", "box_iou", "val_color_accuracy"} <= set(rows[0])
    config = json.loads((run_dir / "config.json").read_text())
    assert [t["name"] for t in config["tasks"]] == ["shape", "color", "box"]
    assert config["args"]["loss_weights"] == "box=5" and config["build"]["trunk"] == "mobilenet_v3_small"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"shape", "color", "box"}
    assert 0.0 <= metrics["tasks"]["box"]["iou"] <= 1.0


def test_evaluate_reproduces_the_training_metrics(run_dir, capsys):
    assert main(["evaluate", str(run_dir / "model.keras"), "--split", "test", "--size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "shape" in printed and "accuracy" in printed
    again = json.loads((run_dir / "metrics_test.json").read_text())["tasks"]
    first = json.loads((run_dir / "metrics.json").read_text())["tasks"]
    for task in first:
        assert again[task]["loss"] == pytest.approx(first[task]["loss"], rel=1e-4)


def test_finished_run_is_not_overwritten_without_force(run_dir, capsys):
    before = (run_dir / "model.keras").stat().st_mtime_ns
    assert main(["train", *TINY, "--tasks", "shape", "--out", str(run_dir)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (run_dir / "model.keras").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--loss-weights", "box5"], "malformed --loss-weights"),
        (["--loss-weights", "count=2"], "not trained here"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--tasks", "colour"], "has no label for task 'colour'"),
        (["--data", "cifar"], "unknown dataset 'cifar'"),
        (["--trunk", "vgg"], "unknown trunk 'vgg'"),
        (["--image-size", "20"], "at least 32"),
    ],
)
def test_bad_arguments_fail_with_one_line(tmp_path, capsys, extra, message):
    args = ["train", *TINY, "--tasks", "shape,box", "--out", str(tmp_path / "r"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "r" / "model.keras").exists()


def test_resume_needs_an_interrupted_run(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_failed_forced_run_keeps_the_previous_run(run_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()}
    assert main(["train", *TINY, "--tasks", "colour", "--out", str(run_dir), "--force"]) == 2
    assert "has no label for task 'colour'" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()} == before
