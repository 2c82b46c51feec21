"""A run that stops part-way keeps its last good epoch: killed with SIGKILL, then resumed to the full
epoch count; or stopped by a loss that turns non-finite, naming the task and how to resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from refusals import TINY, check_refused

from mtl_keras.cli import main as cli

ARGS = ["--data", "shapes", "--tasks", "shape,box", "--trunk", "mobilenet_v3_small", "--image-size", "32",
        "--epochs", "4", "--batch-size", "8", "--train-size", "160", "--val-size", "8", "--test-size", "8"]


def _cli(*args):
    return [sys.executable, "-m", "mtl_keras.cli", *args]


def _epochs(history):
    if not history.exists():
        return []
    return [int(r["epoch"]) for r in csv.DictReader(open(history))]


@pytest.mark.slow
def test_sigkill_then_resume_finishes_all_epochs(tmp_path):
    out = tmp_path / "run"
    history = out / "history.csv"
    proc = subprocess.Popen(_cli("train", *ARGS, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not _epochs(history):
        time.sleep(0.2)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _epochs(history)
    assert done_before and max(done_before) < 3
    assert not (out / "model.keras").exists()
    assert (out / "backup").is_dir()

    # Without --resume the interrupted run is protected.
    refused = subprocess.run(_cli("train", *ARGS, "--out", str(out)), capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run(_cli("train", "--out", str(out), "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epochs = _epochs(history)
    assert epochs[-1] == 3
    # At most the interrupted epoch is redone: every completed epoch before the kill is kept.
    assert set(range(4)) <= set(epochs) and epochs[: len(done_before)] == done_before
    assert (out / "model.keras").exists() and not (out / "backup").exists()


def test_non_finite_loss_names_the_task_and_keeps_the_last_good_epoch(tmp_path, capsys):
    """Epoch 1 trains on good labels; in epoch 2 the count labels are huge (finite, so they pass the label
    check) and the count loss overflows to inf. The run must stop naming 'count', keep epoch 1's backup
    and say how to resume."""
    import tensorflow as tf

    from mtl_keras import data
    from mtl_keras.data.scenes import ScenesSource

    class LateOverflow(ScenesSource):
        def __init__(self, **kw):
            super().__init__("shapes", **kw)
            self.passes = 0

        def examples(self, split, image_size, size=None):
            base = super().examples(split, image_size, size)
            if split != "train":
                return base

            def generate():  # called once per epoch
                self.passes += 1
                for ex in base.as_numpy_iterator():
                    if self.passes > 1:
                        ex["labels"]["count"] = np.full_like(ex["labels"]["count"], 3e38)
                    yield ex

            return tf.data.Dataset.from_generator(generate, output_signature=base.element_spec)

    source = LateOverflow()
    data.register_source("late_overflow", lambda **kw: source)
    try:
        out = tmp_path / "r"
        argv = ["train", "--data", "late_overflow", "--tasks", "shape,count", *TINY, "--epochs", "3",
                "--lr-schedule", "constant", "--out", out]
        message = check_refused(capsys, cli, argv, "loss of task 'count'", "epoch 2", "--resume",
                                f"mtl-keras train --out {out} --resume", absent=[out / "model.keras", out / "metrics.json"])
        assert "became inf" in message or "became nan" in message
    finally:
        data.SOURCES.pop("late_overflow", None)
    backup = out / "backup"
    assert backup.is_dir() and any(backup.rglob("*.weights.h5")), "the last good epoch's backup is gone"
    state = json.loads(next(backup.rglob("training_metadata.json")).read_text())
    assert state["epoch"] == 1  # one completed epoch saved: the first, before the overflow
