"""A training run's folder: its saved settings (``config.json``) and the data options they imply.

Example:
    >>> run_config("/nonexistent/model.keras")
    {}
"""

from __future__ import annotations

import json
import os

from mtl_keras.errors import MtlError


def run_config(model_path: str) -> dict:
    """The training run's config.json beside a model, or ``{}`` when there is none.

    Example:
        >>> run_config("/nonexistent/model.keras")
        {}
    """
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "config.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def data_options(data: str, data_dir=None, config: dict | None = None) -> dict:
    """The source options for dataset ``data``: ``--data-dir`` (made absolute) over the run's saved ones.

    The run's ``data_options`` apply only to the dataset it was trained on; a dataset that takes no
    data dir (``shapes``, ``coco:DIR``) given one is an ``MtlError`` naming both.

    Example:
        >>> data_options("tfds:voc/2007", "/data/tfds")
        {'data_dir': '/data/tfds'}
        >>> data_options("shapes", config={"data": "tfds:voc/2007", "data_options": {"data_dir": "/data/tfds"}})
        {}
    """
    config = config or {}
    options = dict(config.get("data_options") or {}) if data == config.get("data") else {}
    if data_dir is not None:
        options["data_dir"] = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if "data_dir" not in options:
        return options  # nothing to check, and train's early checks stay free of the TensorFlow import
    from mtl_keras import data as data_lib

    accepted = data_lib.source_options(data)
    if accepted is not None and "data_dir" not in accepted:
        raise MtlError(
            f"dataset {data!r} takes no --data-dir (that is for tfds: datasets; coco:DIR names its folder itself)"
        )
    return options
