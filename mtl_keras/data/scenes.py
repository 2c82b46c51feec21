"""The built-in ``shapes`` and ``digits`` scenes as a ``tf.data`` source.

The renderer itself is ``demo.scenes`` (numpy + Pillow, no TensorFlow) so the device-side demo can
draw the same scenes; this module feeds it through ``tf.data`` and declares the tasks it can label.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from demo import scenes as renderer
from mtl_keras.data.describe import describe_tasks
from mtl_keras.data.sharding import shard_indices
from mtl_keras.errors import MtlError
from mtl_keras.tasks import TASK_TYPES, BoxTask, ClassificationTask, MultilabelTask, RegressionTask

DEFAULT_SIZES = {"train": 4000, "val": 500, "test": 1000}


@functools.lru_cache(maxsize=1)
def digit_sprites() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten 8×8 digits (shipped with the package, no download).

    Example:
        >>> images, labels = digit_sprites()
        >>> images.shape[1:], int(labels.max())
        ((8, 8), 9)
    """
    from sklearn.datasets import load_digits  # lazy: scikit-learn takes seconds to import; only digits needs it

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int32)


class ScenesSource:
    """A split of built-in scenes, rendered on the fly by index (deterministic, never stored).

    Example:
        >>> src = ScenesSource("shapes")
        >>> sorted(src.tasks())[:3]
        ['box', 'color', 'count']
    """

    def __init__(self, source: str = "shapes", seed: int = 0, max_objects: int = 3, sizes=None):
        renderer.class_names(source)
        if max_objects < 1:
            raise MtlError(f"max_objects must be at least 1, got {max_objects}")
        self.name = source
        self.seed = int(seed)
        self.max_objects = int(max_objects)
        self.sizes = {**DEFAULT_SIZES, **(sizes or {})}
        # Mirrored digits are not digits; mirrored shapes are the same shapes.
        self.flip_ok = source == "shapes"

    def tasks(self) -> dict:
        """The default task for every label this source has that a registered task type can learn."""
        classes = list(renderer.class_names(self.name))
        main = renderer.main_label_name(self.name)
        tasks = {
            main: ClassificationTask(main, classes=classes),
            "color": ClassificationTask("color", classes=list(renderer.COLORS)),
            "present": MultilabelTask("present", classes=classes),
            "box": BoxTask("box"),
            "count": RegressionTask("count"),
        }
        # Dense tasks join once their types are registered (detection, segmentation).
        if "detection" in TASK_TYPES:
            tasks["objects"] = TASK_TYPES["detection"]("objects", classes=classes, max_objects=self.max_objects)
        if "segmentation" in TASK_TYPES:
            tasks["mask"] = TASK_TYPES["segmentation"]("mask", classes=["background", *classes])
        if "depth" in TASK_TYPES:
            tasks["depth"] = TASK_TYPES["depth"]("depth")
        return tasks

    def class_names(self) -> dict:
        return {name: getattr(t, "classes", None) for name, t in self.tasks().items()}

    def describe(self) -> str:
        """What will train: the split sizes, then one line per task (kind, scene label, classes).

        Returns:
            The text ``mtl-keras data shapes`` prints.

        Example:
            >>> print(ScenesSource("shapes").describe().splitlines()[2])
            shape    classification  the main object's class        6: circle, square, triangle, diamond, cross, star
        """
        sizes = ", ".join(f"{s} {n}" for s, n in self.sizes.items())
        where = {renderer.main_label_name(self.name): "the main object's class", "color": "the main object's colour",
                 "present": "the classes in the scene", "box": "the main object's box", "count": "objects in the scene",
                 "objects": "every object's box and class", "mask": "per pixel: the topmost object",
                 "depth": "per pixel: the distance"}
        return describe_tasks(f"{self.name}: built-in scenes rendered from seed {self.seed} ({sizes})", self.tasks(),
                              where)

    def render(self, split: str, index: int, image_size: int):
        """One scene of a split, rendered with this source's seed, object limit and (for digits) sprites.

        Args:
            split: ``train``, ``val`` or ``test``.
            index: the scene's index in the split.
            image_size: side of the square image, in pixels.

        Returns:
            The rendered scene (``.image`` uint8 HxWx3 and ``.labels``), from ``renderer.render_scene``.
        """
        sprites = digit_sprites() if self.name == "digits" else None
        return renderer.render_scene(
            seed=self.seed, split=split, index=index, image_size=image_size,
            source=self.name, max_objects=self.max_objects, sprites=sprites,
        )

    def examples(self, split: str, image_size: int, size: int | None = None, shard=None) -> tf.data.Dataset:
        """Unbatched ``{"image": uint8 HxWx3, "labels": {...}}`` elements of one split.

        ``shard=(count, index)``: only this worker's scenes (``mtl_keras.data.sharding``), rendered alone.

        Args:
            split: ``train``, ``val`` or ``test``.
            image_size: side of the square images, in pixels.
            size: the number of scenes; ``None`` uses the source's size for the split.
            shard: ``(count, index)``, or ``None`` for all scenes.

        Returns:
            A ``tf.data.Dataset`` of ``{"image", "labels"}`` dicts, in index order.

        Raises:
            MtlError: an unknown split, a size below 1, or an invalid shard.
        """
        if split not in renderer.SPLITS:
            raise MtlError(f"unknown split {split!r}; available: {', '.join(renderer.SPLITS)}")
        n = int(self.sizes[split] if size is None else size)
        if n < 1:
            raise MtlError(f"split {split!r} of {self.name!r} would be empty (size {n})")
        k = len(renderer.class_names(self.name))
        main = renderer.main_label_name(self.name)
        m = self.max_objects

        def render_flat(index):
            s = self.render(split, int(index), image_size)
            lab = s.labels
            return (
                s.image, lab[main], lab["color"], lab["present"], lab["box"], lab["count"],
                lab["objects"]["boxes"], lab["objects"]["labels"], lab["mask"], lab["depth"],
            )

        dtypes = (tf.uint8, tf.int32, tf.int32, tf.float32, tf.float32, tf.float32, tf.float32, tf.int32, tf.uint8,
                  tf.float32)
        shapes = ([image_size, image_size, 3], [], [], [k], [4], [], [m, 4], [m], [image_size, image_size],
                  [image_size, image_size])

        def to_example(index):
            flat = tf.numpy_function(render_flat, [index], dtypes, stateful=False)
            flat = [tf.ensure_shape(t, s) for t, s in zip(flat, shapes)]
            image, cls, color, present, box, count, oboxes, olabels, mask, depth = flat
            labels = {
                main: cls, "color": color, "present": present, "box": box, "count": count,
                "objects": {"boxes": oboxes, "labels": olabels}, "mask": mask, "depth": depth,
            }
            return {"image": image, "labels": labels}

        indices = shard_indices(n, shard)
        return (
            tf.data.Dataset.range(indices.start, indices.stop, indices.step)
            .map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        )
