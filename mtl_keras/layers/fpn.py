"""A light feature pyramid over the trunk taps, shared by every dense head of a model.

Top-down path (1×1 laterals, nearest upsampling, add) from ``c5`` (stride 32) through ``c4`` to
``c3`` (stride 8), then one more ×2 step to stride 4, the resolution the dense heads read.

Why stride 4: at this project's image sizes (64–128 px) a stride-8 map is only 8–16 cells across,
so two small objects often share a centre cell (CenterNet can keep only one of them) and a mask
decoded from it has blocky edges; one extra upsampling step costs little and serves both heads.

Only builtin Keras layers (``Conv2D``, ``BatchNormalization``, ``UpSampling2D``, ``Add``), so it
exports to TFLite builtins and Grad-CAM can reach every layer by name.
"""

from __future__ import annotations

import keras

from demo.decoding import OUTPUT_STRIDE

FPN_KEY = "fpn"
DEFAULT_CHANNELS = 64


def _conv_bn_relu(x, channels: int, name: str):
    x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    # Same momentum as the trunk's default (build_model's bn_momentum): short runs need it.
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def fpn_features(features: dict, channels: int = DEFAULT_CHANNELS):
    """The stride-4 pyramid map for dense heads, built once per model and cached in ``features``.

    The first dense head that calls this builds the layers (all named ``fpn_*``) and stores the
    result under ``features["fpn"]``; later heads of the same model get the same tensor, so a
    detection head and a segmentation head share one FPN.

    Args:
        features: the trunk's taps ``{"c3", "c4", "c5": tensor, ...}``; the result is cached in it under ``"fpn"``.
        channels: the width of every FPN layer (default ``DEFAULT_CHANNELS``).

    Returns:
        The symbolic stride-4 map, ``[B, H/4, W/4, channels]``.

    Raises:
        ValueError: ``features`` lacks one of ``c3``, ``c4``, ``c5``.

    Example:
        >>> import keras
        >>> from mtl_keras.model.trunks import build_trunk
        >>> feats = build_trunk("mobilenet_v3_small", keras.Input((64, 64, 3)), weights=None)
        >>> p = fpn_features(feats)
        >>> tuple(p.shape[1:]), fpn_features(feats) is p
        ((16, 16, 64), True)
    """
    if FPN_KEY in features:
        return features[FPN_KEY]
    missing = [k for k in ("c3", "c4", "c5") if k not in features]
    if missing:
        raise ValueError(f"the FPN needs trunk taps c3, c4 and c5; missing: {', '.join(missing)}")
    lateral = {
        k: keras.layers.Conv2D(channels, 1, name=f"fpn_lateral_{k}")(features[k]) for k in ("c3", "c4", "c5")
    }
    x = lateral["c5"]
    for k in ("c4", "c3"):
        up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_up_to_{k}")(x)
        x = keras.layers.Add(name=f"fpn_merge_{k}")([lateral[k], up])
    x = _conv_bn_relu(x, channels, "fpn_p3")
    stride, step = 8, 0
    while stride > OUTPUT_STRIDE:  # stride 8 -> OUTPUT_STRIDE, one ×2 step at a time
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_up_{step}")(x)
        stride //= 2
        if stride == 4 and "c2" in features:
            # The stride-4 tap is only a dozen layers deep: its edges and colours are learned in the
            # first steps, so masks and centres get sharp long before the deep stages are trained.
            c2 = keras.layers.Conv2D(channels, 1, name="fpn_lateral_c2")(features["c2"])
            x = keras.layers.Add(name="fpn_merge_c2")([c2, x])
        x = _conv_bn_relu(x, channels, f"fpn_out_{step}")
        step += 1
    features[FPN_KEY] = x
    return x
