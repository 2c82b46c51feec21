"""A run folder: what ``train`` writes (model, config, metrics, history) and every later stage reads.

- ``folder.py``: ``RunDir``, the run folder as one object (paths, config.json, data options, the
  model reopened with the data it was trained on, resume settings, the model card's run fields)
- ``files.py``: atomic writes (JSON, text, ``.keras``), a folder that is safe to write into
- ``entry.py``: how ``mtl-keras`` and ``python -m export`` run a command and report a mistake

Example:
    >>> from mtl_keras.run.files import write_json
"""
