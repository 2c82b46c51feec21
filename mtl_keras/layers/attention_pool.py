"""Attention pooling: a global head's own learned weighted average over a feature map.

Global average pooling weighs every cell alike, so on a scene it mixes the background and every
object into one vector. Attention pooling lets each head learn where to look (a 1×1 conv scores
each cell, a softmax over the cells turns the scores into weights): the head for "the main object's
shape" can weigh the cells of objects and leave the background out. The score kernel starts at
zero, so the pooling starts as a plain average. Builtin layers only (Conv2D, Reshape, Softmax, Dot),
so it saves with ``safe_mode=True`` and exports to TFLite builtins.
"""

from __future__ import annotations

import keras


def attention_pool(feature_map, name: str):
    """``[B, H, W, C]`` -> ``[B, C]``: the softmax-weighted average of the cells, weights learned.

    Example:
        >>> import keras, numpy as np
        >>> x = keras.Input((4, 4, 8))
        >>> m = keras.Model(x, attention_pool(x, "shape"))
        >>> v = np.random.default_rng(0).normal(size=(1, 4, 4, 8)).astype("float32")
        >>> bool(np.allclose(m(v), v.mean(axis=(1, 2)), atol=1e-6))  # zero scores: a plain average
        True
    """
    h, w, c = feature_map.shape[1:]
    scores = keras.layers.Conv2D(1, 1, kernel_initializer="zeros", name=f"{name}_attention_score")(feature_map)
    scores = keras.layers.Reshape((h * w, 1), name=f"{name}_attention_cells")(scores)
    # In float32 under mixed precision: a softmax over hundreds of cells loses its small weights in float16.
    weights = keras.layers.Softmax(axis=1, dtype="float32", name=f"{name}_attention_weights")(scores)
    values = keras.layers.Reshape((h * w, c), name=f"{name}_attention_values")(feature_map)
    pooled = keras.layers.Dot(axes=1, name=f"{name}_attention_pool")([weights, values])
    return keras.layers.Flatten(name=f"{name}_attention_vector")(pooled)
