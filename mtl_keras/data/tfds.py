"""tensorflow-datasets adapters: real datasets with the same label names as the built-in scenes.

=======================  ===========================================================================
``--data``               labels (task name: meaning)
=======================  ===========================================================================
``tfds:oxford_iiit_pet`` ``breed`` (37 classes), ``species`` (cat, dog), ``box`` (head box, rel_yxyx;
                         missing on the test split), ``mask`` (trimap: background, pet, border; the
                         border is "not classified" in the dataset, so it is ignored in loss and mIoU)
``tfds:voc/2007``        ``present`` (multi-hot over 20 classes), ``objects`` (boxes + labels, all
``tfds:voc/2012``        objects, difficult ones included)
``tfds:coco/2017``       ``present`` (80 classes), ``objects`` (crowd regions left out)
``tfds:coco/2014``
=======================  ===========================================================================

Splits: ``train``/``val``/``test`` map to the dataset's own splits; where the public test split has
no labels (COCO, VOC 2012) ``val`` and ``test`` are the two halves of its validation split, and
``oxford_iiit_pet`` keeps the last 10% of its train split for ``val``. Class names come from the
dataset (the demo prints them). Nothing downloads unless asked: ``download=True`` (a source option)
or ``tfds build NAME`` once; ``data_dir`` (or ``$TFDS_DATA_DIR``) says where prepared data lives.

Example:
    >>> import mtl_keras as mk
    >>> src = mk.data.get_source("tfds:voc/2007")
    >>> sorted(src.tasks()), src.tasks()["objects"].classes[:2]
    (['objects', 'present'], ['aeroplane', 'bicycle'])
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from mtl_keras.data.sharding import check_shard
from mtl_keras.errors import MtlError, unknown
from mtl_keras.tasks import BoxTask, ClassificationTask, DetectionTask, MultilabelTask, SegmentationTask

SPLITS = ("train", "val", "test")

# The 80 COCO detection categories in tfds' label order, for when the installed dataset info has
# none (tfds only fills them in while preparing the data; mock data has plain numbers).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
PET_MASK_CLASSES = ("background", "pet", "border")
# Oxford pets trimap pixel values: 1 pet, 2 background, 3 not classified; anything else is unlabelled.
_TRIMAP_TO_CLASS = {1: 1, 2: 0, 3: 2}


@dataclasses.dataclass(frozen=True)
class _Adapter:
    kind: str  # "pets" or "objects"
    splits: tuple
    max_objects: int = 100


_HALF_VAL = (("train", "train"), ("val", "validation[:50%]"), ("test", "validation[50%:]"))
ADAPTERS = {
    "oxford_iiit_pet": _Adapter("pets", (("train", "train[:90%]"), ("val", "train[90%:]"), ("test", "test"))),
    "voc/2007": _Adapter("objects", (("train", "train"), ("val", "validation"), ("test", "test")), 50),
    "voc/2012": _Adapter("objects", _HALF_VAL, 60),
    "coco/2017": _Adapter("objects", _HALF_VAL, 100),
    "coco/2014": _Adapter("objects", _HALF_VAL, 100),
}


def pad_objects(boxes, labels, max_objects: int) -> dict:
    """The Keras bounding-box dict with exactly ``max_objects`` rows, padded (or cut) with -1.

    Args:
        boxes: the objects' boxes, reshaped to ``[N, 4]`` float32.
        labels: the objects' class indices, reshaped to ``[N]`` int32.
        max_objects: the number of rows M to return.

    Returns:
        ``{"boxes": [M, 4] float32, "labels": [M] int32}`` tensors.

    Example:
        >>> d = pad_objects(tf.constant([[0., 0., .5, .5]]), tf.constant([3]), 2)
        >>> d["labels"].numpy().tolist(), d["boxes"].numpy()[1].tolist()
        ([3, -1], [-1.0, -1.0, -1.0, -1.0])
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])[:max_objects]
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])[:max_objects]
    pad = max_objects - tf.shape(labels)[0]
    return {
        "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]], constant_values=-1.0), [max_objects, 4]),
        "labels": tf.ensure_shape(tf.pad(labels, [[0, pad]], constant_values=-1), [max_objects]),
    }


class TfdsSource:
    """A tensorflow-datasets dataset through one of the adapters in ``ADAPTERS``.

    Options: ``data_dir`` (where prepared tfds data lives), ``download`` (fetch and prepare it if
    missing; False by default, COCO is ~25 GB), ``max_objects`` (rows of the ``objects`` label).

    Example:
        >>> TfdsSource("oxford_iiit_pet").tasks()["mask"].classes
        ['background', 'pet', 'border']
    """

    def __init__(self, name: str, data_dir=None, download: bool = False, max_objects: int | None = None):
        if name not in ADAPTERS:
            raise unknown("tfds dataset", name, ADAPTERS)
        if data_dir is not None and not os.path.isdir(os.fspath(data_dir)):
            raise MtlError(f"tfds data dir not found: {os.fspath(data_dir)}")
        self.name = f"tfds:{name}"
        self.tfds_name = name
        self.adapter = ADAPTERS[name]
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        self.download = bool(download)
        self.max_objects = int(max_objects or self.adapter.max_objects)
        if self.max_objects < 1:
            raise MtlError(f"max_objects must be at least 1, got {self.max_objects}")
        self.flip_ok = True  # mirrored pets, cars and people are still pets, cars and people

    def _builder(self):
        import tensorflow_datasets as tfds  # lazy: seconds to import; only a tfds source needs it

        return tfds.builder(self.tfds_name, data_dir=self.data_dir)

    def class_names(self) -> dict:
        """Class names per task, taken from the dataset's own info.

        Example:
            >>> len(TfdsSource("coco/2017").class_names()["objects"])
            80
        """
        if getattr(self, "_names", None) is None:
            self._names = self._read_class_names()
        return self._names

    def _read_class_names(self) -> dict:
        features = self._builder().info.features
        if self.adapter.kind == "pets":
            return {
                "breed": list(features["label"].names),
                "species": [s.lower() for s in features["species"].names],
                "box": None,
                "mask": list(PET_MASK_CLASSES),
            }
        names = list(features["objects"]["label"].names)
        if self.tfds_name.startswith("coco/") and all(n.isdigit() for n in names):
            names = list(COCO_CLASSES)
        return {"present": names, "objects": names}

    def tasks(self) -> dict:
        """The default task for each label this dataset has."""
        names = self.class_names()
        if self.adapter.kind == "pets":
            return {
                "breed": ClassificationTask("breed", classes=names["breed"]),
                "species": ClassificationTask("species", classes=names["species"]),
                "box": BoxTask("box"),
                "mask": SegmentationTask("mask", classes=names["mask"], ignore_class="border"),
            }
        return {
            "present": MultilabelTask("present", classes=names["present"]),
            "objects": DetectionTask("objects", classes=names["objects"], max_objects=self.max_objects),
        }

    def tfds_split(self, split: str) -> str:
        """The tfds split string behind one of ``train``/``val``/``test``.

        Args:
            split: ``train``, ``val`` or ``test``.

        Returns:
            The tfds split string (e.g. ``"validation[50%:]"``).

        Raises:
            MtlError: an unknown split.

        Example:
            >>> TfdsSource("coco/2017").tfds_split("test")
            'validation[50%:]'
        """
        splits = dict(self.adapter.splits)
        if split not in splits:
            raise unknown("split", split, SPLITS)
        return splits[split]

    def examples(self, split: str, image_size: int, size: int | None = None, shard=None) -> tf.data.Dataset:
        """Unbatched ``{"image": uint8 HxWx3, "labels": {...}}`` elements of one split.

        ``shard=(count, index)``: this worker's even part of the split (tfds' ``even_splits``, equal
        sizes), read alone; ``size`` then caps the part at ``size // count``.

        Args:
            split: ``train``, ``val`` or ``test``.
            image_size: the model input side (unused here: tfds images are resized by the pipeline).
            size: at most this many examples; ``None`` for the whole split.
            shard: ``(count, index)``, or ``None`` for the whole split.

        Returns:
            A ``tf.data.Dataset`` of ``{"image", "labels"}`` dicts (training files shuffled).

        Raises:
            MtlError: an unknown split, an invalid shard, a size below 1, or data not prepared in ``data_dir``.
        """
        import tensorflow_datasets as tfds  # lazy: seconds to import; only a tfds source needs it

        tfds_split = self.tfds_split(split)
        shard = check_shard(shard)
        if shard is not None:
            # Slicing, not Dataset.shard: with shuffle_files the workers' file orders differ.
            tfds_split = tfds.even_splits(tfds_split, n=shard[0], drop_remainder=True)[shard[1]]
            size = None if size is None else max(int(size) // shard[0], 1)
        try:
            ds = tfds.load(
                self.tfds_name, split=tfds_split, data_dir=self.data_dir, download=self.download,
                shuffle_files=(split == "train"),
            )
        except AssertionError as e:  # tfds' way of saying "not prepared"
            where = self.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
            raise MtlError(
                f"tfds dataset {self.tfds_name!r} is not prepared in {where}; prepare it once with "
                f"`tfds build {self.tfds_name}` (downloads) or pass download=True"
            ) from e
        if size is not None:
            if int(size) < 1:
                raise MtlError(f"split {split!r} of {self.name!r} would be empty (size {size})")
            ds = ds.take(int(size))
        convert = self._pets_example if self.adapter.kind == "pets" else self._objects_example
        return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

    @staticmethod
    def _pets_example(ex):
        box = tf.cast(ex["head_bbox"], tf.float32)
        # The test split has no head boxes (tfds stores all zeros): mark them missing.
        box = tf.where((box[2] > box[0]) & (box[3] > box[1]), box, -tf.ones([4]))
        table = np.full(256, 255, np.uint8)
        for value, cls in _TRIMAP_TO_CLASS.items():
            table[value] = cls
        mask = tf.gather(tf.constant(table), tf.cast(ex["segmentation_mask"][..., 0], tf.int32))
        labels = {
            "breed": tf.cast(ex["label"], tf.int32),
            "species": tf.cast(ex["species"], tf.int32),
            "box": box,
            "mask": mask,
        }
        return {"image": ex["image"], "labels": labels}

    def _objects_example(self, ex):
        objects = ex["objects"]
        # Real data has one row per object in every field; mock data may not, so align them.
        n = tf.minimum(tf.shape(objects["bbox"])[0], tf.shape(objects["label"])[0])
        boxes = tf.cast(objects["bbox"][:n], tf.float32)
        labels = tf.cast(objects["label"][:n], tf.int32)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if "is_crowd" in objects:
            crowd = tf.cast(objects["is_crowd"], tf.bool)
            crowd = tf.concat([crowd, tf.zeros([tf.maximum(n - tf.shape(crowd)[0], 0)], tf.bool)], 0)[:n]
            keep &= ~crowd
        boxes, labels = tf.boolean_mask(boxes, keep), tf.boolean_mask(labels, keep)
        k = len(self.class_names()["present"])
        present = tf.reduce_max(tf.one_hot(labels, k, dtype=tf.float32), axis=0)
        present = tf.ensure_shape(tf.where(tf.size(labels) > 0, present, tf.zeros([k])), [k])
        labels_dict = {"present": present, "objects": pad_objects(boxes, labels, self.max_objects)}
        return {"image": ex["image"], "labels": labels_dict}
