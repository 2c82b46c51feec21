"""Custom Keras layers of mtl_keras; each is registered so `.keras` files load with safe_mode=True."""

from mtl_keras.layers.boxes import CenterSizeToCorners
from mtl_keras.layers.detection_summary import DetectionSummary
from mtl_keras.layers.fpn import fpn_features
from mtl_keras.layers.main_object_pool import MainObjectPool
from mtl_keras.layers.preprocess import TrunkPreprocess

__all__ = ["CenterSizeToCorners", "DetectionSummary", "MainObjectPool", "TrunkPreprocess", "fpn_features"]
