"""The command lines start quietly: TensorFlow's start-up lines only with --verbose / MTL_KERAS_VERBOSE."""

import os
import re
import subprocess
import sys

import pytest

from demo.quiet import GLOG_PREFIX, LITE_NOISE, held_stderr
from mtl_keras.startup import STARTUP_NOISE, verbose_requested

# The lines TensorFlow 2.21 printed before this change on a CPU machine, as a user saw them.
SEEN = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795984002.034343   23227 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1795984002.042144   23227 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
E0000 00:00:1795984035.226829   23987 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""


def _user_env(**extra):
    # As a user runs it: no TF_CPP_MIN_LOG_LEVEL from conftest, no verbose switch.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MTL_KERAS_VERBOSE")}
    return {**env, **extra}


@pytest.mark.parametrize("command", [["mtl_keras.cli", "evaluate"], ["export"]], ids=["mtl-keras", "export"])
def test_the_first_line_a_user_sees_is_ours(tmp_path, command):
    # Both entry points: a module imported before the quiet start that loads TensorFlow shows its lines.
    missing = str(tmp_path / "missing.keras")
    proc = subprocess.run([sys.executable, "-m", *command, missing],
                          capture_output=True, text=True, env=_user_env(), timeout=300)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: model file not found: {missing}"]


def test_verbose_shows_tensorflow_start_up_and_the_error_still_comes_last(tmp_path):
    missing = str(tmp_path / "missing.keras")
    proc = subprocess.run([sys.executable, "-m", "export", missing, "--verbose"],
                          capture_output=True, text=True, env=_user_env(), timeout=300)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2
    assert any(GLOG_PREFIX.match(line) or "absl::InitializeLog" in line for line in lines), proc.stderr
    assert lines[-1] == f"error: model file not found: {missing}"


def test_known_start_up_lines_are_dropped_and_anything_else_is_kept(capfd):
    real = "E0000 00:00:1.5 77 dso_loader.cc:9] Could not load dynamic library 'libcudnn.so.9'\n"
    with held_stderr(STARTUP_NOISE) as held:
        # Written at the file-descriptor level, as C++ writes it, not through sys.stderr.
        os.write(2, (SEEN + real + "Python warning: something real\n").encode())
    assert held.kept == real + "Python warning: something real\n"
    assert capfd.readouterr().err == held.kept


def test_a_failing_block_shows_everything_it_printed(capfd):
    try:
        with held_stderr(STARTUP_NOISE):
            os.write(2, SEEN.encode())
            raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
    except ImportError:
        pass
    assert capfd.readouterr().err == SEEN


def test_converter_and_litert_notices_are_dropped(capfd):
    notices = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
               "fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, output_inference_type: FLOAT32\n")
    with held_stderr(LITE_NOISE) as held:
        os.write(2, (notices + "INFO: something else\n").encode())
    assert held.kept == "INFO: something else\n"
    assert capfd.readouterr().err == held.kept


def test_later_native_errors_reach_the_user(capfd):
    with held_stderr(STARTUP_NOISE):
        os.write(2, SEEN.encode())
    os.write(2, b"E0000 later error\n")
    assert capfd.readouterr().err == "E0000 later error\n"


def test_verbose_switches(monkeypatch):
    monkeypatch.delenv("MTL_KERAS_VERBOSE", raising=False)
    assert verbose_requested(["train", "--verbose"]) and not verbose_requested(["train", "--", "--verbose"])
    assert not verbose_requested(["train"])
    monkeypatch.setenv("MTL_KERAS_VERBOSE", "1")
    assert verbose_requested([])
    with held_stderr(re.compile(".")) as held:  # verbose: nothing is held back
        pass
    assert held.kept == ""
