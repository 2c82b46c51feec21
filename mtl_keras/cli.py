"""``mtl-keras``: train | evaluate | ... — each subcommand lives in ``mtl_keras/commands/``.

User mistakes end in ``error: <one line>`` and exit status 2, never a TensorFlow traceback.

Example:
    $ mtl-keras train --data shapes --tasks shape,color,box --epochs 3 --out runs/x
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mtl_keras.startup import VERBOSE_ENV, start_tensorflow, verbose_requested


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand.

    Example:
        >>> build_parser().parse_args(["evaluate", "m.keras"]).command
        'evaluate'
    """
    from mtl_keras.commands import COMMANDS

    parser = argparse.ArgumentParser(prog="mtl-keras", description="Multi-task learning for Keras.")
    add_verbose_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(p)
        add_verbose_argument(p)
        p.set_defaults(_run=module.run)
    return parser


def add_verbose_argument(p: argparse.ArgumentParser) -> None:
    """``--verbose``: show TensorFlow's start-up lines (read from argv before the parser runs).

    Example:
        >>> p = argparse.ArgumentParser(); add_verbose_argument(p); p.parse_args(["--verbose"]).verbose
        True
    """
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help=f"show TensorFlow's start-up log lines (or set {VERBOSE_ENV}=1)")


def run_reporting_errors(run, args) -> int:
    """Run a command; a user mistake becomes one ``error: ...`` line on stderr and exit status 2.

    Shared by ``mtl-keras`` and ``python -m export``. Example:
        >>> from mtl_keras.errors import MtlError
        >>> def bad(args): raise MtlError("no such thing")
        >>> run_reporting_errors(bad, None)
        2
    """
    from mtl_keras.errors import MtlError

    try:
        return int(run(args) or 0)
    except MtlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # A bad label or image is only seen inside tf.data, as a TensorFlow error; anything else is a bug.
        from mtl_keras.data import data_error

        converted = data_error(e, getattr(args, "data", None))
        if converted is None:
            raise
        print(f"error: {converted}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    """Entry point of the ``mtl-keras`` command; returns the exit status.

    Example:
        >>> main(["evaluate", "does-not-exist.keras"])
        2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before the parser: building it imports the commands, and they import TensorFlow.
    start_tensorflow(verbose=verbose_requested(argv))
    args = build_parser().parse_args(argv)
    return run_reporting_errors(args._run, args)


if __name__ == "__main__":
    sys.exit(main())
