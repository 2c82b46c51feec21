"""``--images DIR`` and ``--label TASK=FEATURE[:KIND]``: the source options every command that reads data takes.

Shared by ``mtl-keras train | evaluate | explain | export | compare | data`` and ``python -m export``
(which cannot import the command line), like ``add_verbose_argument``. ``mtl_keras.run.folder``
turns the values into source options (``images``, ``labels``), saved in the run's config.json.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_source_flags(p)
    >>> a = p.parse_args(["--label", "age=Age:regression", "--label", "kind=Kind"]); a.images, a.label
    (None, ['age=Age:regression', 'kind=Kind'])
"""

from __future__ import annotations

import argparse


def add_source_flags(p: argparse.ArgumentParser, saved: bool = False) -> None:
    """Add ``--images`` and the repeatable ``--label`` (both None when not given).

    Args:
        p: the parser (or subcommand parser).
        saved: the command reads a run, whose saved values apply when a flag is not given (the help says so).

    Example:
        >>> p = argparse.ArgumentParser(); add_source_flags(p, saved=True)
        >>> p.parse_args([]).label is None
        True
    """
    default = "the run's, from config.json" if saved else None
    p.add_argument("--images", default=None, metavar="DIR",
                   help="the folder a csv: dataset's picture paths are relative to (default: "
                        + (default or "the CSV's folder") + ")")
    p.add_argument("--label", action="append", default=None, metavar="TASK=FEATURE[:KIND]",
                   help="read task TASK from a csv: column or a tfds: feature, KIND classification | regression | "
                        "multilabel (default: inferred); repeatable" + (f"; default: {default}" if saved else ""))
