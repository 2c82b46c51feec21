"""The evaluation stage: per-task metrics of a trained model, and multi-task against single-task.

- ``metrics.py``: ``evaluate_model`` (Keras metrics plus each task's dataset metrics, e.g. COCO mAP)
- ``compare.py``: ``compare`` trains balancers and single-task baselines on one budget
- ``delta_m.py``: Δm, its summary over seeds, and the comparison table

Example:
    >>> from mtl_keras.evaluate.metrics import evaluate_model
"""
