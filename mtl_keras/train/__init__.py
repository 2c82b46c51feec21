"""The training stage around ``fit``: distribution strategies, mixed precision, callbacks, the recipe.

- ``distribute.py``: ``get_strategy`` by name, the worker's role, a dataset per worker
- ``precision.py``: mixed-precision policy chosen by measured benefit
- ``callbacks.py``: images/s per epoch, stop on a non-finite loss
- ``recipe.py``: optimizer, warm-up and schedule, weight decay, task settings

The step itself (per-task losses, masks, balancer) is ``mtl_keras.balancing.step``: the model's
``train_step`` calls it, and the model stage sits below this one.

Example:
    >>> from mtl_keras.train.recipe import make_optimizer
"""
