"""Reading the ``model_card.json`` that ``python -m export`` writes beside its .tflite files.

The card says what each output means (task kind, class names, decoding settings). A .tflite the card
does not list, or whose checksum differs from the card's, is refused: its outputs would be decoded
with the wrong meaning.

Example:
    >>> load_card("missing/model_int8.tflite")
    Traceback (most recent call last):
    ...
    demo.runner.ModelError: no model_card.json beside missing/model_int8.tflite; the demo needs the card that `python -m export` writes with the .tflite
"""

from __future__ import annotations

import hashlib
import json
import os

from demo.runner import ModelError

CARD_NAME = "model_card.json"
CARD_FORMAT = "mtl-keras/model-card"
SUPPORTED_VERSIONS = (1,)


def load_card(model_path) -> dict:
    """The card beside ``model_path``, checked against the file; returns the card with ``file`` = its entry.

    Args:
        model_path: the .tflite file; ``model_card.json`` is read from its folder.

    Returns:
        The card dict, with ``file`` set to the model file's entry of ``files``.

    Raises:
        ModelError: no card, unreadable JSON, not a card, an unsupported version, an unlisted file, a checksum mismatch.

    Example:
        >>> card = load_card("runs/x/export/model_int8.tflite")  # doctest: +SKIP
        >>> card["file"]["mode"]                                 # doctest: +SKIP
        'int8'
    """
    model_path = os.fspath(model_path)
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), CARD_NAME)
    if not os.path.isfile(path):
        raise ModelError(f"no {CARD_NAME} beside {model_path}; the demo needs the card that `python -m export` "
                         "writes with the .tflite")
    try:
        with open(path) as f:
            card = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} is not readable JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{path} is not an mtl-keras model card (no \"format\": \"{CARD_FORMAT}\")")
    if card.get("version") not in SUPPORTED_VERSIONS:
        raise ModelError(f"{path} has card version {card.get('version')}; this demo reads {SUPPORTED_VERSIONS}")
    name = os.path.basename(model_path)
    files = card.get("files") or {}
    if name not in files:
        raise ModelError(f"{name} is not listed in {CARD_NAME} (it lists: {', '.join(files) or 'nothing'}); "
                         "it is not a model this export wrote")
    entry = files[name]
    if os.path.isfile(model_path) and entry.get("sha256"):
        with open(model_path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != entry["sha256"]:
            raise ModelError(f"{name} does not match {CARD_NAME} (checksum differs): the file was replaced or "
                             "altered after export")
    return {**card, "file": entry}


def check_outputs(card: dict, output_names) -> None:
    """The model's output names must be exactly the card's task names.

    Args:
        card: the model card (its ``tasks`` names are read).
        output_names: the model's output names.

    Raises:
        ModelError: the two sets of names differ.

    Example:
        >>> check_outputs({"tasks": [{"name": "box"}]}, ["box"])
        >>> check_outputs({"tasks": [{"name": "box"}]}, ["logits"])
        Traceback (most recent call last):
        ...
        demo.runner.ModelError: the model's outputs (logits) are not the card's tasks (box)
    """
    tasks = sorted(t["name"] for t in card["tasks"])
    if sorted(output_names) != tasks:
        raise ModelError(f"the model's outputs ({', '.join(sorted(output_names))}) are not the card's tasks ({', '.join(tasks)})")
