"""The representative dataset for int8 calibration: images from the run's own training split.

Calibration sets the int8 ranges of every activation from what these images produce, so they must
look like what the model will see; a few hundred cover the ranges, far fewer leave rare activations
clipped.

Example:
    >>> import mtl_keras as mk
    >>> images = calibration_images("shapes", image_size=32, count=4, warn=False)
    >>> images.shape, images.dtype.name
    ((4, 32, 32, 3), 'uint8')
"""

from __future__ import annotations

import warnings

import numpy as np

from mtl_keras.errors import MtlError

DEFAULT_COUNT = 300
RECOMMENDED_MIN = 200


def calibration_images(data: str, image_size: int, count: int = DEFAULT_COUNT, split: str = "train",
                       warn: bool = True, data_options: dict | None = None) -> np.ndarray:
    """The first ``count`` images of ``split`` (unaugmented) as uint8 ``[N, S, S, 3]`` RGB.

    uint8 because the int8 model's input is uint8: calibrating on the pixels a camera gives keeps the
    input scale at exactly 1 and zero point 0.

    Args:
        data: a data source name (``shapes``, ``scenes``, ``coco``, ``folder:<path>``, a TFDS name).
        image_size: the model's input size.
        count: how many images.
        split: the split to read them from.
        warn: warn when ``count`` is below ``RECOMMENDED_MIN``.
        data_options: more keyword arguments for ``mtl_keras.data.load`` (e.g. a COCO folder).

    Returns:
        uint8 ``[count, image_size, image_size, 3]`` (fewer when the split is smaller).

    Example (too few images for good int8 ranges: a warning says so):
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     images = calibration_images("shapes", image_size=32, count=2)
        >>> len(images), str(caught[0].message)[:33]
        (2, 'int8 calibration on only 2 images')
    """
    count = int(count)
    if count < 1:
        raise MtlError(f"calibration needs at least 1 image, got {count}")
    if warn and count < RECOMMENDED_MIN:
        warnings.warn(
            f"int8 calibration on only {count} images; below {RECOMMENDED_MIN} some activation ranges are "
            "estimated from too few samples and accuracy can drop", stacklevel=2,
        )
    # lazy: `python -m export` reads DEFAULT_COUNT for its flags before TensorFlow starts quietly
    from mtl_keras import data as data_lib

    source = data_lib.get_source(data, **(data_options or {}))
    examples = source.examples(split, int(image_size), None)
    ds = data_lib.make_pipeline(examples.take(count), [], int(image_size), batch_size=64)
    chunks = [np.asarray(x) for x, _, _ in ds]
    if not chunks:
        raise MtlError(f"the {split!r} split of {data!r} has no images to calibrate on")
    images = np.concatenate(chunks)
    if len(images) < count:
        warnings.warn(f"the {split!r} split has only {len(images)} images; calibrating on those", stacklevel=2)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def representative_dataset(images: np.ndarray):
    """A ``TFLiteConverter.representative_dataset`` callable over ``images`` (one per step).

    The first image gets one black and one white pixel so the uint8 input is calibrated to the full
    0..255 range (scale 1, zero point 0) whatever the data's own extremes are.

    Args:
        images: uint8 ``[N, S, S, 3]`` (``calibration_images``).

    Returns:
        A callable that yields ``{"image": float32 [1, S, S, 3]}`` once per image.

    Example:
        >>> gen = representative_dataset(np.zeros((2, 8, 8, 3), np.uint8))
        >>> [float(s["image"].max()) for s in gen()]
        [255.0, 0.0]
    """
    images = np.array(images, np.float32, copy=True)

    def gen():
        for i, image in enumerate(images):
            image = image[None]
            if i == 0:
                image = image.copy()
                image[0, 0, 0, :] = 0.0
                image[0, 0, 1, :] = 255.0
            yield {"image": image}

    return gen
