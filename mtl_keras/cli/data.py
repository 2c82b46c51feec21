"""Show what a dataset will train, before training: its tasks, their kinds, columns or features, and classes.

Example:
    mtl-keras data csv:photos/labels.csv --images photos/jpg
    mtl-keras data folder:flowers
    mtl-keras data tfds:celeb_a --data-dir /data/tfds --label smiling=attributes/Smiling:classification
"""

from __future__ import annotations

import argparse
import warnings

from mtl_keras.run.data_flags import add_source_flags
from mtl_keras.run.folder import data_options

# What follows each prefixed dataset's ':' when the names are listed.
PREFIX_HINTS = {"coco:": "DIR", "csv:": "FILE", "folder:": "DIR", "tfds:": "NAME"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``data`` flags: the dataset, and the source options ``train`` would take.

    Args:
        p: the subcommand's parser.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["csv:x.csv", "--images", "pics"]).images
        'pics'
    """
    p.add_argument("data", nargs="?", default=None, metavar="NAME",
                   help="dataset name (shapes, digits, tfds:NAME, coco:DIR, csv:FILE, folder:DIR); "
                        "without one, the kinds of dataset there are")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where prepared tfds data lives (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    add_source_flags(p)


def run(args) -> int:
    """Print the source's ``describe()`` (or its tasks), or the dataset names when none is given.

    Args:
        args: the parsed ``data`` flags.

    Returns:
        0 (a user mistake, such as a CSV that is wrong as a whole, is an ``MtlError``).

    Example:
        >>> from mtl_keras.cli import main
        >>> main(["data", "shapes"])  # doctest: +SKIP
        0
    """
    options = {} if args.data is None else data_options(args.data, args.data_dir, images=args.images,
                                                         labels=args.label)
    # lazy: the data package imports TensorFlow; the parser stays free of it.
    from mtl_keras import data as data_lib
    from mtl_keras.data.describe import describe_source

    if args.data is None:
        print("datasets: " + ", ".join(n + PREFIX_HINTS.get(n, "...") if n.endswith(":") else n
                                       for n in data_lib.available_sources()))
        return 0
    with warnings.catch_warnings():
        # The printout lists the bad rows itself; the warning would say it twice.
        warnings.simplefilter("ignore", UserWarning)
        source = data_lib.get_source(args.data, **options)
    print(describe_source(args.data, source))
    return 0
