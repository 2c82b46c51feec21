"""``mtl-keras``: train | evaluate | ... | data — each subcommand is one module of this package.

User mistakes end in ``error: <one line>`` and exit status 2, never a TensorFlow traceback.
``arguments.py`` parses the flag values several commands share (no command imports another);
``training.py`` holds the heavy phases of ``train``.

Example:
    $ mtl-keras train --data shapes --tasks shape,color,box --epochs 3 --out runs/x
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mtl_keras.run.entry import add_verbose_argument, run_reporting_errors
from mtl_keras.startup import start_tensorflow, verbose_requested

# Subcommand -> module: ``add_arguments(parser)`` and ``run(args) -> int``. Adding a subcommand is
# adding a module here and one entry.
COMMANDS = {
    "train": "mtl_keras.cli.train",
    "evaluate": "mtl_keras.cli.evaluate",
    "export": "mtl_keras.cli.export",
    "compare": "mtl_keras.cli.compare",
    "explain": "mtl_keras.cli.explain",
    "data": "mtl_keras.cli.data",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand.

    Returns:
        The ``mtl-keras`` parser; each subcommand's ``_run`` default is its module's ``run``.

    Example:
        >>> build_parser().parse_args(["evaluate", "m.keras"]).command
        'evaluate'
    """
    parser = argparse.ArgumentParser(prog="mtl-keras", description="Multi-task learning for Keras.")
    add_verbose_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        # By name, so adding a command is one COMMANDS entry.
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(p)
        add_verbose_argument(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``mtl-keras`` command; returns the exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for a user mistake (one ``error:`` line on stderr), or the command's own status.

    Example:
        >>> main(["evaluate", "does-not-exist.keras"])
        2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before the parser: building it imports the commands, and explain (its CAM methods) and export
    # (its calibration defaults) import TensorFlow.
    start_tensorflow(verbose=verbose_requested(argv))
    args = build_parser().parse_args(argv)
    return run_reporting_errors(args._run, args)

