"""A quiet TensorFlow start: its start-up log lines are held back unless the user asks for them.

TensorFlow 2.21 writes 6-8 lines to the process's stderr while it loads ("All log messages before
absl::InitializeLog()", oneDNN, "Could not find cuda drivers", and on every machine without a GPU
``E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)``). They come from C++ before absl
logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them: the only way is to point file
descriptor 2 elsewhere while TensorFlow loads and its platforms register. Lines known to be start-up
chatter (``STARTUP_NOISE``) are dropped; anything else written in that window (a real error, a Python warning) is
passed on to the user unchanged, and everything is passed on if the import fails. Later errors go
to stderr as usual.

``--verbose`` on the command lines or ``MTL_KERAS_VERBOSE=1`` in the environment shows it all.
This module imports nothing heavy, so the entry points call it before anything loads TensorFlow.

Example:
    >>> tf = start_tensorflow()
    >>> tf.__name__
    'tensorflow'
"""

from __future__ import annotations

import os
import re
import sys

from demo.quiet import VERBOSE_ENV, held_stderr
from demo.quiet import verbose as verbose_env

# What TensorFlow and its CUDA/XLA plugins print while loading on a machine with or without a GPU.
# Matched against the text after the glog prefix; an unknown line is always shown.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are"
    r"|Could not find cuda drivers"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation_placer\.cc|cuda_blas\.cc|cuda_dnn\.cc|cuda_fft\.cc"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|Created device /job:localhost"
)

_started = False


def verbose_requested(argv=()) -> bool:
    """Whether the user asked to see TensorFlow's start-up lines: ``--verbose`` in ``argv``, or ``MTL_KERAS_VERBOSE``.

    Args:
        argv: the command line's arguments (without the program name).

    Returns:
        True when the start-up lines should be shown.

    Example:
        >>> verbose_requested(["train", "--verbose"])
        True
    """
    if verbose_env():
        return True
    argv = list(argv)
    return "--verbose" in argv[: argv.index("--")] if "--" in argv else "--verbose" in argv


def start_tensorflow(verbose: bool = False):
    """Import TensorFlow and register its devices, keeping its start-up chatter off stderr.

    Idempotent; returns the ``tensorflow`` module. With ``verbose`` nothing is held back. (Later
    TensorFlow messages follow ``TF_CPP_MIN_LOG_LEVEL``, which mtl_keras sets to 2, errors only,
    unless the environment already sets it.)

    Args:
        verbose: show everything TensorFlow prints while it loads.

    Returns:
        The ``tensorflow`` module.

    Example:
        >>> start_tensorflow().config.list_physical_devices("CPU")[0].device_type
        'CPU'
    """
    global _started
    if verbose:
        # Read by every later held_stderr block (conversion, LiteRT) and by child processes.
        os.environ[VERBOSE_ENV] = "1"
    if _started or "tensorflow" in sys.modules or verbose:
        import tensorflow as tf  # lazy: this module exists to start TensorFlow quietly, on demand

        _started = True
        return tf
    with held_stderr(STARTUP_NOISE):
        import tensorflow as tf  # lazy: its start-up noise is held back here

        # The CUDA platform (and its cuInit error on a machine without a GPU) loads on first use.
        tf.config.list_physical_devices()
    _started = True
    return tf
