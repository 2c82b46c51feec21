"""A user's own data: a folder of images plus a COCO-format instances JSON (``--data coco:DIR``).

Layout::

    DIR/
      annotations.json       # COCO "instances": images, annotations, categories
      images/cat_001.jpg     # each image's file_name, relative to DIR or to DIR/images
      ...

``coco:DIR/some.json`` names the JSON directly (images relative to its folder). With
``DIR/train.json``, ``DIR/val.json`` and ``DIR/test.json`` those are the splits; with one JSON the
images are split by id (``id % 10``: 0 → test, 1 → val, the rest → train), the same on every run.

Labels (crowd annotations only mark their pixels unlabelled in ``mask``):

=============  ===========================================================================
``category``   class of the main (largest) object, like ``shape`` in the scenes
``box``        main object's box, ``rel_yxyx``
``present``    multi-hot over the categories
``objects``    every object's box and class (Keras bounding-box dict, padded with -1)
``mask``       per pixel: 0 background, category index + 1 (smaller objects drawn on top),
               from the polygons or RLE through pycocotools; offered when annotations have them
=============  ===========================================================================

Example:
    >>> src = CocoJsonSource("tests/data/coco")  # doctest: +SKIP
    >>> sorted(src.tasks())  # doctest: +SKIP
    ['box', 'category', 'mask', 'objects', 'present']
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os

import numpy as np
import tensorflow as tf

from demo.pictures import ImageError, read_picture
from mtl_keras.data.describe import describe_tasks
from mtl_keras.data.pictures import read_picture_tensor
from mtl_keras.errors import MtlError, unknown
from mtl_keras.tasks import BoxTask, ClassificationTask, DetectionTask, MultilabelTask, SegmentationTask

SPLITS = ("train", "val", "test")
DEFAULT_JSON = "annotations.json"
UNLABELLED = 255


def _split_of(image_id: int) -> str:
    return {0: "test", 1: "val"}.get(int(image_id) % 10, "train")


def read_coco_json(path: str) -> dict:
    """Parse and check a COCO instances JSON; every problem is an ``MtlError`` naming it.

    Args:
        path: the JSON file (COCO instances format: ``images``, ``annotations``, ``categories``).

    Returns:
        The parsed JSON object (a dict), unchanged.

    Raises:
        MtlError: a missing or unparsable file, a missing key, a repeated or dangling id, a bad size or bbox.

    Example:
        >>> read_coco_json("missing.json")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: COCO annotation file not found: missing.json
    """
    if not os.path.isfile(path):
        raise MtlError(f"COCO annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise MtlError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError:
        raise MtlError(f"{path} is not a UTF-8 text file") from None
    if not isinstance(data, dict):
        raise MtlError(f"{path}: expected a JSON object with images, annotations and categories")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise MtlError(f"{path}: missing or not a list: {', '.join(missing)} (COCO instances format)")
    if not data["categories"]:
        raise MtlError(f"{path}: 'categories' is empty")
    if not data["images"]:
        raise MtlError(f"{path}: 'images' is empty")

    def need(item, keys, what, i):
        lacking = [k for k in keys if k not in item]
        if lacking:
            raise MtlError(f"{path}: {what} #{i} lacks {', '.join(lacking)}")

    cat_ids, img_ids = set(), set()
    for i, c in enumerate(data["categories"]):
        need(c, ("id", "name"), "category", i)
        if c["id"] in cat_ids:
            raise MtlError(f"{path}: category id {c['id']} appears twice")
        cat_ids.add(c["id"])
    for i, im in enumerate(data["images"]):
        need(im, ("id", "file_name", "width", "height"), "image", i)
        if im["id"] in img_ids:
            raise MtlError(f"{path}: image id {im['id']} appears twice")
        if not (int(im["width"]) > 0 and int(im["height"]) > 0):
            raise MtlError(f"{path}: image {im['file_name']!r} has width/height {im['width']}x{im['height']}")
        img_ids.add(im["id"])
    for i, a in enumerate(data["annotations"]):
        need(a, ("image_id", "category_id", "bbox"), "annotation", i)
        if a["image_id"] not in img_ids:
            raise MtlError(f"{path}: annotation #{i} refers to image id {a['image_id']}, which is not in 'images'")
        if a["category_id"] not in cat_ids:
            raise MtlError(
                f"{path}: annotation #{i} has category_id {a['category_id']}; categories: {sorted(cat_ids)}"
            )
        bbox = a["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise MtlError(f"{path}: annotation #{i} bbox must be [x, y, width, height], got {bbox!r}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise MtlError(f"{path}: annotation #{i} bbox has a negative size: {bbox}")
    return data


class CocoJsonSource:
    """Images and a COCO instances JSON as a data source (see the module docstring for the layout).

    Options: ``max_objects`` (rows of the ``objects`` label; default: the most objects any image
    has), ``flip`` (random horizontal flips in training; turn off for text, digits, arrows...).

    Example:
        >>> CocoJsonSource("/no/such/dir")
        Traceback (most recent call last):
        ...
        mtl_keras.errors.MtlError: COCO data dir not found: /no/such/dir
    """

    def __init__(self, path: str, max_objects: int | None = None, flip: bool = True):
        from pycocotools.coco import COCO  # lazy: only a COCO source needs it

        path = os.path.expanduser(os.fspath(path))
        if not path:
            raise MtlError("coco: needs a folder or a JSON file, e.g. coco:data/my_set")
        if path.endswith(".json"):
            root, files = os.path.dirname(path) or ".", {s: path for s in SPLITS}
            if not os.path.isfile(path):
                raise MtlError(f"COCO annotation file not found: {path}")
        else:
            if not os.path.isdir(path):
                raise MtlError(f"COCO data dir not found: {path}")
            root = path
            per_split = {s: os.path.join(path, f"{s}.json") for s in SPLITS}
            if all(os.path.isfile(p) for p in per_split.values()):
                files = per_split
            elif os.path.isfile(os.path.join(path, DEFAULT_JSON)):
                files = {s: os.path.join(path, DEFAULT_JSON) for s in SPLITS}
            else:
                found = sorted(f for f in os.listdir(path) if f.endswith(".json"))
                raise MtlError(
                    f"{path} holds no {DEFAULT_JSON} (nor train.json, val.json and test.json); "
                    f"JSON files there: {', '.join(found) or 'none'}"
                )
        self.name = f"coco:{path}"
        self.root = root
        self.flip_ok = bool(flip)
        self.files = files
        shared = len(set(files.values())) == 1
        self.data = {f: read_coco_json(f) for f in sorted(set(files.values()))}
        first = self.data[files["train"]]
        self.categories = sorted(first["categories"], key=lambda c: c["id"])
        for f, d in self.data.items():
            if sorted(c["id"] for c in d["categories"]) != [c["id"] for c in self.categories]:
                raise MtlError(f"{f} has other categories than {files['train']}; the splits must share them")
        self.classes = [str(c["name"]) for c in self.categories]
        self._index = {c["id"]: i for i, c in enumerate(self.categories)}
        self.has_masks = any("segmentation" in a for d in self.data.values() for a in d["annotations"])
        counts = collections.Counter(
            (f, a["image_id"]) for f, d in self.data.items() for a in d["annotations"] if not a.get("iscrowd", 0)
        )
        self.max_objects = int(max_objects or max(counts.values(), default=1))
        if self.max_objects < 1:
            raise MtlError(f"max_objects must be at least 1, got {max_objects}")
        self._coco = {}
        for f, d in self.data.items():
            coco = COCO()
            coco.dataset = d
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                coco.createIndex()
            self._coco[f] = coco
        self._images = {}
        for split, f in files.items():
            images = self.data[f]["images"]
            if shared:
                images = [im for im in images if _split_of(im["id"]) == split]
            self._images[split] = images
        self._check_files()

    def resolve(self, file_name: str) -> str | None:
        """The image file behind a ``file_name`` of the JSON (``root/`` or ``root/images/``), or None.

        Args:
            file_name: an image's ``file_name`` in the JSON (relative to the data folder).

        Returns:
            The path of the existing file, or None when neither location has it.
        """
        for candidate in (os.path.join(self.root, file_name), os.path.join(self.root, "images", file_name)):
            if os.path.isfile(candidate):
                return candidate
        return None

    def _check_files(self) -> None:
        missing = sorted({im["file_name"] for ims in self._images.values() for im in ims if not self.resolve(im["file_name"])})
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise MtlError(f"{len(missing)} image file(s) named in the COCO JSON are missing under {self.root}: {shown}")

    def unreadable_images(self) -> list[str]:
        """``"FILE: reason"`` for each picture the shared reader refuses (as the demo would); slow, for diagnosis.

        Example:
            >>> CocoJsonSource("tests/data/coco").unreadable_images()  # doctest: +SKIP
            ['im12.png: truncated or corrupt image data (image file is truncated)']
        """
        bad = []
        for name in sorted({im["file_name"] for ims in self._images.values() for im in ims}):
            try:
                read_picture(self.resolve(name))
            except ImageError as e:
                bad.append(f"{name}: {e}")
        return bad

    def class_names(self) -> dict:
        return {name: getattr(t, "classes", None) for name, t in self.tasks().items()}

    def describe(self) -> str:
        """What will train: the images per split, then one line per task (kind, annotation, classes).

        Returns:
            The text ``mtl-keras data coco:DIR`` prints.

        Example:
            >>> print(CocoJsonSource("tests/data/coco").describe())  # doctest: +SKIP
        """
        sizes = ", ".join(f"{s} {len(self._images[s])}" for s in SPLITS)
        where = {"category": "the largest object's category", "box": "the largest object's bbox",
                 "present": "the categories annotated", "objects": "every annotation's bbox and category",
                 "mask": "the annotations' segmentations"}
        return describe_tasks(f"{self.name}: COCO annotations ({sizes})", self.tasks(), where)

    def tasks(self) -> dict:
        """The default task for every label this data has."""
        tasks = {}
        if len(self.classes) >= 2:
            tasks["category"] = ClassificationTask("category", classes=self.classes)
        tasks["box"] = BoxTask("box")
        tasks["present"] = MultilabelTask("present", classes=self.classes)
        tasks["objects"] = DetectionTask("objects", classes=self.classes, max_objects=self.max_objects)
        if self.has_masks:
            tasks["mask"] = SegmentationTask("mask", classes=["background", *self.classes])
        return tasks

    # ----- labels -----------------------------------------------------------------------------
    def labels_of(self, split: str, image: dict) -> dict:
        """Every label of one image (numpy), except the mask (see ``mask_of``).

        Args:
            split: ``train``, ``val`` or ``test`` (picks the JSON the image belongs to).
            image: the image's entry of the JSON (``id``, ``width``, ``height``, ...).

        Returns:
            ``{"category", "box", "present", "objects"}``: the largest object's class and [4] box
            (ymin, xmin, ymax, xmax in 0..1), [C] 0/1 presence, M padded objects; -1 marks no label.

        Example:
            >>> src.labels_of("train", src.data[src.files["train"]]["images"][0])["box"]  # doctest: +SKIP
            array([0.1, 0.2, 0.5, 0.6], dtype=float32)
        """
        coco = self._coco[self.files[split]]
        anns = [a for a in coco.imgToAnns.get(image["id"], []) if not a.get("iscrowd", 0)]
        w, h = float(image["width"]), float(image["height"])
        boxes, labels, areas = [], [], []
        for a in anns:
            x, y, bw, bh = (float(v) for v in a["bbox"])
            box = np.clip([y / h, x / w, (y + bh) / h, (x + bw) / w], 0.0, 1.0)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            boxes.append(box)
            labels.append(self._index[a["category_id"]])
            areas.append(bw * bh)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(labels, np.int32)
        present = np.zeros(len(self.classes), np.float32)
        present[labels] = 1.0
        main = int(np.argmax(areas)) if areas else -1
        order = np.argsort(-np.asarray(areas), kind="stable")[: self.max_objects]
        padded_boxes = np.full((self.max_objects, 4), -1.0, np.float32)
        padded_labels = np.full((self.max_objects,), -1, np.int32)
        padded_boxes[: len(order)], padded_labels[: len(order)] = boxes[order], labels[order]
        return {
            "category": np.int32(labels[main] if main >= 0 else -1),
            "box": boxes[main] if main >= 0 else np.full(4, -1.0, np.float32),
            "present": present,
            "objects": {"boxes": padded_boxes, "labels": padded_labels},
        }

    def mask_of(self, split: str, image: dict) -> np.ndarray:
        """``H×W`` uint8 mask at the JSON's image size: 0 background, class + 1, 255 unlabelled.

        Larger objects are drawn first so smaller ones stay visible; crowd regions and objects
        without a segmentation (their box area) are unlabelled rather than called background.

        Args:
            split: ``train``, ``val`` or ``test`` (picks the JSON the image belongs to).
            image: the image's entry of the JSON (``id``, ``width``, ``height``, ``file_name``).

        Returns:
            A uint8 ``[height, width]`` array.

        Raises:
            MtlError: an annotation whose segmentation pycocotools cannot decode.
        """
        coco = self._coco[self.files[split]]
        h, w = int(image["height"]), int(image["width"])
        mask = np.zeros((h, w), np.uint8)
        anns = sorted(coco.imgToAnns.get(image["id"], []), key=lambda a: -float(a["bbox"][2] * a["bbox"][3]))
        unlabelled = np.zeros((h, w), bool)
        for a in anns:
            if "segmentation" not in a or not a["segmentation"]:
                x, y, bw, bh = (int(round(float(v))) for v in a["bbox"])
                unlabelled[max(y, 0) : y + bh, max(x, 0) : x + bw] = True
                continue
            try:
                pixels = coco.annToMask(a).astype(bool)
            except Exception as e:  # malformed polygon / RLE: name the annotation
                raise MtlError(f"annotation {a.get('id', '?')} of {image['file_name']!r} has a bad segmentation: {e}") from None
            if a.get("iscrowd", 0):
                unlabelled |= pixels
            else:
                mask[pixels] = self._index[a["category_id"]] + 1
        mask[unlabelled] = UNLABELLED
        return mask

    # ----- tf.data ------------------------------------------------------------------------------
    def examples(self, split: str, image_size: int, size: int | None = None) -> tf.data.Dataset:
        """Unbatched ``{"image": uint8 HxWx3, "labels": {...}}`` elements of one split.

        Pictures are read by ``demo.pictures.read_picture`` (as the device runner reads them) with
        ``image_size`` as the target, so a large JPEG may be decoded at a reduced scale.

        Args:
            split: ``train``, ``val`` or ``test``.
            image_size: the model input side the pictures will be resized to (allows a reduced-scale decode).
            size: at most this many images (the first ones); ``None`` for the whole split.

        Returns:
            A ``tf.data.Dataset`` of ``{"image", "labels"}`` dicts (``labels["mask"]`` when the JSON has masks).

        Raises:
            MtlError: an unknown split, or a split with no images.
        """
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        images = self._images[split]
        if size is not None:
            images = images[: int(size)]
        if not images:
            raise MtlError(f"split {split!r} of {self.name} has no images")
        labels = [self.labels_of(split, im) for im in images]
        paths = [self.resolve(im["file_name"]) for im in images]
        names = [str(im["file_name"]) for im in images]
        table = {
            "category": np.stack([l["category"] for l in labels]),
            "box": np.stack([l["box"] for l in labels]),
            "present": np.stack([l["present"] for l in labels]),
            "objects": {
                "boxes": np.stack([l["objects"]["boxes"] for l in labels]),
                "labels": np.stack([l["objects"]["labels"] for l in labels]),
            },
        }
        ds = tf.data.Dataset.from_tensor_slices((np.arange(len(images)), paths, names, table))

        def mask_at(i):
            return self.mask_of(split, images[int(i)])

        def to_example(i, path, name, labels):
            # The demo's reader, not tf.io.decode_image: the same pixels the device runner sees.
            image = read_picture_tensor(path, name, image_size)
            labels = dict(labels)
            if self.has_masks:
                mask = tf.numpy_function(mask_at, [i], tf.uint8, stateful=False)
                labels["mask"] = tf.ensure_shape(mask, [None, None])
            return {"image": image, "labels": labels}

        return ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
