"""A user's COCO-format JSON + images as a data source: labels, masks, splits and clear errors."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import mtl_keras as mk
from mtl_keras.data.coco import CocoJsonSource
from mtl_keras.errors import MtlError

W, H = 40, 30  # not square, so x and y mix-ups show


def _rle(pixels):
    rle = mask_utils.encode(np.asfortranarray(pixels.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _dataset():
    """Four images: ids 10 (test), 11 (val), 12 and 13 (train); 13 has no annotations."""
    crowd = np.zeros((H, W), bool)
    crowd[0:4, 30:40] = True
    annotations = [
        # image 12: a big cat polygon (x 4..24, y 2..22), a small dog (RLE) inside it, a crowd of dogs
        {"id": 1, "image_id": 12, "category_id": 7, "bbox": [4, 2, 20, 20],
         "segmentation": [[4, 2, 24, 2, 24, 22, 4, 22]]},
        {"id": 2, "image_id": 12, "category_id": 9, "bbox": [10, 10, 6, 4],
         "segmentation": _rle(np.pad(np.ones((4, 6), bool), ((10, H - 14), (10, W - 16))))},
        {"id": 3, "image_id": 12, "category_id": 9, "bbox": [30, 0, 10, 4], "iscrowd": 1, "segmentation": _rle(crowd)},
        {"id": 4, "image_id": 10, "category_id": 9, "bbox": [0, 0, 8, 8], "segmentation": [[0, 0, 8, 0, 8, 8, 0, 8]]},
        {"id": 5, "image_id": 11, "category_id": 7, "bbox": [20, 10, 10, 10],
         "segmentation": [[20, 10, 30, 10, 30, 20, 20, 20]]},
    ]
    return {
        "images": [{"id": i, "file_name": f"img_{i}.png", "width": W, "height": H} for i in (10, 11, 12, 13)],
        "annotations": annotations,
        "categories": [{"id": 9, "name": "dog"}, {"id": 7, "name": "cat"}],
    }


def _write(root, data, name="annotations.json", images_dir="images"):
    (root / images_dir).mkdir(parents=True, exist_ok=True)
    for im in data["images"]:
        Image.fromarray(np.full((H, W, 3), im["id"], np.uint8)).save(root / images_dir / im["file_name"])
    (root / name).write_text(json.dumps(data))
    return root


@pytest.fixture
def root(tmp_path):
    return _write(tmp_path / "set", _dataset())


def test_labels_follow_the_json(root):
    src = CocoJsonSource(str(root))
    assert src.classes == ["cat", "dog"]  # sorted by category id, names kept
    assert sorted(src.tasks()) == ["box", "category", "mask", "objects", "present"]
    image = next(im for im in src._images["train"] if im["id"] == 12)
    labels = src.labels_of("train", image)
    assert labels["category"] == 0  # the largest non-crowd object is the cat
    np.testing.assert_allclose(labels["box"], [2 / H, 4 / W, 22 / H, 24 / W], rtol=1e-6)
    assert labels["present"].tolist() == [1.0, 1.0]
    assert src.max_objects == 2  # the crowd does not count as an object
    assert labels["objects"]["labels"].tolist() == [0, 1]
    np.testing.assert_allclose(labels["objects"]["boxes"][1], [10 / H, 10 / W, 14 / H, 16 / W], rtol=1e-6)
    mask = src.mask_of("train", image)
    assert mask.shape == (H, W)
    assert mask[5, 6] == 1 and mask[12, 12] == 2  # cat, and the dog drawn over it
    assert mask[25, 35] == 0 and mask[1, 35] == 255  # background, crowd unlabelled
    empty = src.labels_of("train", next(im for im in src._images["train"] if im["id"] == 13))
    assert empty["category"] == -1 and np.all(empty["box"] == -1) and not empty["present"].any()


def test_splits_by_id_and_the_pipeline(root):
    src = CocoJsonSource(str(root))
    assert [[im["id"] for im in src._images[s]] for s in ("train", "val", "test")] == [[12, 13], [11], [10]]
    tasks = mk.data.tasks_for(f"coco:{root}")
    ds = mk.data.load(f"coco:{root}", split="train", image_size=32, batch_size=2, tasks=tasks, augment=False)
    x, y, w = next(iter(ds))
    assert tuple(x.shape) == (2, 32, 32, 3) and float(x[0, 0, 0, 0]) == pytest.approx(12.0, abs=1e-3)
    assert tuple(y["mask"].shape) == (2, 32, 32) and tuple(y["objects"].shape) == (2, 8, 8, 2 + 5)
    assert w["category"].numpy().tolist() == [1.0, 0.0]  # image 13 has no main object
    assert float(w["mask"][0].numpy().min()) == 0.0  # the crowd pixels are unlabelled


def test_per_split_files_and_a_json_path(tmp_path):
    data = _dataset()
    root = tmp_path / "split"
    for split in ("train", "val", "test"):
        _write(root, data, name=f"{split}.json", images_dir=".")
    src = CocoJsonSource(str(root))
    assert len(src._images["val"]) == 4  # each split file is used whole
    by_file = CocoJsonSource(str(root / "train.json"))
    assert [len(by_file._images[s]) for s in ("train", "val", "test")] == [2, 1, 1]


def test_errors_name_the_problem(tmp_path, root):
    with pytest.raises(MtlError, match="COCO data dir not found"):
        mk.data.get_source(f"coco:{tmp_path / 'nope'}")
    with pytest.raises(MtlError, match="no annotations.json"):
        CocoJsonSource(str(tmp_path))
    with pytest.raises(MtlError, match=r"has no label for task 'shape'; available: category, box"):
        mk.data.tasks_for(f"coco:{root}", names=["shape"])
    with pytest.raises(MtlError, match="unknown split 'dev'; available: test, train, val"):
        CocoJsonSource(str(root)).examples("dev", 32)

    def broken(name, edit):
        d = tmp_path / name
        data = _dataset()
        edit(data)
        return str(_write(d, data))

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "annotations.json").write_text('{"images": [')
    with pytest.raises(MtlError, match="is not valid JSON"):
        CocoJsonSource(str(tmp_path / "bad"))
    with pytest.raises(MtlError, match="missing or not a list: categories"):
        CocoJsonSource(broken("nocat", lambda d: d.pop("categories")))
    with pytest.raises(MtlError, match=r"category_id 3; categories: \[7, 9\]"):
        CocoJsonSource(broken("badcat", lambda d: d["annotations"][0].update(category_id=3)))
    with pytest.raises(MtlError, match="refers to image id 99"):
        CocoJsonSource(broken("badimg", lambda d: d["annotations"][0].update(image_id=99)))
    with pytest.raises(MtlError, match=r"bbox must be \[x, y, width, height\]"):
        CocoJsonSource(broken("badbox", lambda d: d["annotations"][0].update(bbox=[1, 2])))
    missing = broken("missing", lambda d: None)
    (tmp_path / "missing" / "images" / "img_11.png").unlink()
    with pytest.raises(MtlError, match="1 image file.* missing .*img_11.png"):
        CocoJsonSource(missing)
