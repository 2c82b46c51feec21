"""How an entry point runs a command: ``--verbose``, and a user mistake as one ``error:`` line.

Shared by ``mtl-keras`` (``mtl_keras.cli``) and ``python -m export``, so both report the same way:
exit status 2 and ``error: <one line>`` for a user mistake, never a TensorFlow traceback.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_verbose_argument(p); p.parse_args(["--verbose"]).verbose
    True
"""

from __future__ import annotations

import argparse
import sys

from mtl_keras.errors import MtlError
from mtl_keras.startup import VERBOSE_ENV


def add_verbose_argument(p: argparse.ArgumentParser) -> None:
    """``--verbose``: show TensorFlow's start-up lines (read from argv before the parser runs).

    Args:
        p: the parser (or subcommand parser) to add the flag to.

    Example:
        >>> p = argparse.ArgumentParser(); add_verbose_argument(p); p.parse_args(["--verbose"]).verbose
        True
    """
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help=f"show TensorFlow's start-up log lines (or set {VERBOSE_ENV}=1)")


def run_reporting_errors(run, args) -> int:
    """Run a command; a user mistake becomes one ``error: ...`` line on stderr and exit status 2.

    Shared by ``mtl-keras`` and ``python -m export``.

    Args:
        run: the command, ``run(args) -> int | None``.
        args: its parsed arguments.

    Returns:
        The command's exit status; 2 for a user mistake, 130 when interrupted.

    Example:
        >>> def bad(args): raise MtlError("no such thing")
        >>> run_reporting_errors(bad, None)
        2
    """
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
        # lazy: the data package imports TensorFlow, which the entry points start quietly first.
        from mtl_keras.data import data_error

        converted = data_error(e, getattr(args, "data", None))
        if converted is None:
            raise
        print(f"error: {converted}", file=sys.stderr)
        return 2


def check_positive(args, *names: str, optional: bool = False) -> None:
    """One-line errors for flags that must be positive integers (``--batch-size 0``).

    Args:
        args: the parsed arguments.
        *names: argparse ``dest`` names (``batch_size`` for ``--batch-size``).
        optional: None means "not given" and passes (``--size``, ``--eval-size``).

    Raises:
        MtlError: ``--<flag> must be a positive integer, got <value>``.

    Example:
        >>> check_positive(argparse.Namespace(n=0), "n")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: --n must be a positive integer, got 0
        >>> check_positive(argparse.Namespace(size=None), "size", optional=True)
    """
    for name in names:
        value = getattr(args, name)
        if optional and value is None:
            continue
        if value < 1:
            raise MtlError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
