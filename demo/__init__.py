"""The device runtime: run an exported ``.tflite`` model with LiteRT, numpy and Pillow only.

This folder is copied onto a device as it is, so it imports neither TensorFlow nor ``mtl_keras``
(``tests/test_layout.py`` checks it). The dependency points the other way: the library reuses the
numpy decoders (``demo.heads``, ``demo.decoding``) and the picture reader (``demo.pictures``) from
here, so the phone and the Keras model decode and read pictures with one implementation.

Example:
    $ python -m demo runs/demo/export/model_int8.tflite --samples 8 --out runs/demo/gallery
"""
