"""The trunk's own input preprocessing, inside the graph, so a model takes camera pixels as they are."""

import keras
from keras import ops

# ImageNet statistics the keras.applications trunks were trained with.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch", "none")


@keras.saving.register_keras_serializable(package="mtl_keras")
class TrunkPreprocess(keras.layers.Layer):
    """Map RGB pixels in [0, 255] (uint8 or float) to what a trunk expects.

    ``caffe``: RGB→BGR and ImageNet mean subtraction (ResNet50); ``tf``: scale to [-1, 1];
    ``torch``: [0, 1] then ImageNet mean/std; ``none``: cast only (trunks that preprocess themselves).

    Example:
        >>> import numpy as np
        >>> y = TrunkPreprocess("caffe")(np.full((1, 2, 2, 3), 255, "uint8"))
        >>> [round(float(v), 3) for v in y[0, 0, 0]]
        [151.061, 138.221, 131.32]
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; available: {', '.join(MODES)}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            # A gather, not ops.flip: flip lowers to TFLite REVERSE_V2, which is wrong once quantized to
            # int8 (max error 245 vs 2.9 for the gather on 0..390 values); the float result is the same.
            x = ops.take(x, [2, 1, 0], axis=-1)
            return x - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
