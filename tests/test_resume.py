"""Kill a real training process with SIGKILL mid-run, then resume it to the full epoch count."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

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
