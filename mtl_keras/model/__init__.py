"""The model stage: the trunk, the shared features, one head per task, and the Keras model that trains them.

- ``trunks.py``: trunk registry (ResNet50 by default) and its feature taps C3/C4/C5
- ``build.py``: ``build_model(tasks, trunk=..., image_size=...)``, one named output per task
- ``multitask.py``: ``MultiTaskModel``, compile with per-task defaults and a balancer
- ``replicas.py``: Keras workarounds for training on several replicas and workers
- ``saving.py``: ``load_model`` (``safe_mode=True``), with every custom object registered

Example:
    >>> from mtl_keras.model import build_model, MultiTaskModel
"""

from mtl_keras.model.build import build_model
from mtl_keras.model.multitask import MultiTaskModel

__all__ = ["MultiTaskModel", "build_model"]
