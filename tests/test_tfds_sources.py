"""tensorflow-datasets adapters on ``tfds.testing.mock_data``: documented label names, shapes, values.

The generic mapping of any other dataset is tested in ``test_tfds_features.py``.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import mtl_keras as mk
from mtl_keras.data.tfds import COCO_CLASSES, TfdsSource
from mtl_keras.errors import MtlError

SIZE = 32


@pytest.fixture
def mock():
    with tfds.testing.mock_data(num_examples=4):
        yield


def _first_batch(name, tasks):
    ds = mk.data.load(name, split="train", image_size=SIZE, batch_size=4, size=4, tasks=tasks)
    return next(iter(ds))


def test_oxford_pets_has_breed_species_box_and_trimap_mask(mock):
    tasks = mk.data.tasks_for("tfds:oxford_iiit_pet")
    assert [t.name for t in tasks] == ["breed", "species", "box", "mask"]
    by_name = {t.name: t for t in tasks}
    assert len(by_name["breed"].classes) == 37 and by_name["species"].classes == ["cat", "dog"]
    assert by_name["mask"].classes == ["background", "pet", "border"] and by_name["mask"].ignore_class == "border"

    ex = next(iter(TfdsSource("oxford_iiit_pet").examples("train", SIZE, size=1)))
    raw = next(iter(tfds.load("oxford_iiit_pet", split="train[:90%]")))
    trimap = raw["segmentation_mask"].numpy()[..., 0]
    mask = ex["labels"]["mask"].numpy()
    assert mask.shape == trimap.shape
    for value, cls in ((1, 1), (2, 0), (3, 2)):  # pet, background, not classified
        assert np.all(mask[trimap == value] == cls)
    assert np.all(mask[~np.isin(trimap, (1, 2, 3))] == 255)  # anything else is unlabelled

    x, y, w = _first_batch("tfds:oxford_iiit_pet", tasks)
    assert tuple(x.shape) == (4, SIZE, SIZE, 3)
    assert y["breed"].numpy().max() < 37 and set(y["species"].numpy()) <= {0, 1}
    assert tuple(y["box"].shape) == (4, 4) and tuple(y["mask"].shape) == (4, SIZE, SIZE)
    # Border and unlabelled pixels weigh 0, everything else 1.
    weights, targets = w["mask"].numpy(), y["mask"].numpy()
    assert set(np.unique(weights)) <= {0.0, 1.0} and np.all(weights[targets == 2] == 0)


@pytest.mark.parametrize("name, classes, first", [("voc/2007", 20, "aeroplane"), ("coco/2017", 80, "person")])
def test_object_datasets_have_present_and_objects(mock, name, classes, first):
    src = mk.data.get_source(f"tfds:{name}")
    tasks = src.tasks()
    assert sorted(tasks) == ["objects", "present"]
    assert len(tasks["present"].classes) == classes and tasks["objects"].classes[0] == first
    if name.startswith("coco"):
        assert tasks["objects"].classes == list(COCO_CLASSES)  # names kept for the demo
    ex = next(iter(src.examples("val", SIZE, size=1)))
    objects = ex["labels"]["objects"]
    m = src.max_objects
    assert tuple(objects["boxes"].shape) == (m, 4) and tuple(objects["labels"].shape) == (m,)
    labels, boxes = objects["labels"].numpy(), objects["boxes"].numpy()
    valid = labels >= 0
    assert np.all(labels[valid] < classes) and np.all(boxes[~valid] == -1)
    assert np.all(boxes[valid][:, 2] > boxes[valid][:, 0]) and np.all(boxes[valid][:, 3] > boxes[valid][:, 1])
    present = ex["labels"]["present"].numpy()
    assert present.tolist() == [float(k in set(labels[valid])) for k in range(classes)]

    # Every object with a box is kept, VOC's difficult ones too; COCO's crowd regions are left out.
    flag = "is_crowd" if name.startswith("coco") else "is_difficult"
    flagged_kept = []
    raws = tfds.as_numpy(tfds.load(name, split=src.tfds_split("val")).take(4))
    for ex, raw in zip(src.examples("val", SIZE, size=4), raws):
        raw = raw["objects"]
        n = min(len(raw["bbox"]), len(raw["label"]))  # mock data's fields differ in length
        boxes = raw["bbox"][:n]
        flagged = np.zeros(n, bool)
        flagged[: min(n, len(raw[flag]))] = raw[flag][:n]
        has_box = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        keep = has_box & ~flagged if flag == "is_crowd" else has_box
        got = ex["labels"]["objects"]["labels"].numpy()
        assert got[got >= 0].tolist() == raw["label"][:n][keep].tolist()
        flagged_kept.append(bool(np.any(flagged & has_box)))
    assert any(flagged_kept)  # the mock data holds difficult (VOC) or crowd (COCO) objects with boxes to check

    x, y, w = _first_batch(f"tfds:{name}", list(tasks.values()))
    assert tuple(y["objects"].shape) == (4, SIZE // 4, SIZE // 4, classes + 5)
    assert tuple(y["present"].shape) == (4, classes)


def test_unknown_names_and_missing_data_are_clear_errors(mock, tmp_path):
    with pytest.raises(MtlError, match=r"^unknown tfds dataset 'mnistt'; did you mean mnist"):
        mk.data.get_source("tfds:mnistt")
    with pytest.raises(MtlError, match=r"^tfds dataset 'voc/1999' cannot be opened: .*BuilderConfig 1999 not found"):
        mk.data.get_source("tfds:voc/1999")
    with pytest.raises(MtlError, match="unknown dataset 'voc'; available: .*coco:.*tfds:"):
        mk.data.get_source("voc")
    with pytest.raises(MtlError, match="has no label for task 'mask'; available: present, objects"):
        mk.data.tasks_for("tfds:voc/2007", names=["present", "mask"])
    with pytest.raises(MtlError, match="tfds data dir not found"):
        TfdsSource("voc/2007", data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(MtlError, match="unknown split 'dev'"):
        TfdsSource("voc/2007").examples("dev", SIZE)


def test_unprepared_dataset_says_how_to_prepare_it(tmp_path):
    # No mock here: the real loader, an empty data dir, nothing downloads (download=False).
    src = TfdsSource("voc/2007", data_dir=str(tmp_path))
    with pytest.raises(MtlError, match="not prepared .*tfds build voc/2007"):
        src.examples("train", SIZE)


def test_workers_read_disjoint_equal_parts_of_a_tfds_split(mock, monkeypatch):
    # Multi-worker training: each worker reads tfds.even_splits(split, drop_remainder=True)[rank] alone.
    # (mock_data ignores split slicing, so the slices asked of tfds.load are what is checked; tfds's
    # even_splits makes them disjoint and equal.)
    asked = []
    real_load = tfds.load

    def spy(name, split, **kw):
        asked.append(split)
        return real_load(name, split=split, **kw)

    monkeypatch.setattr(tfds, "load", spy)
    source = TfdsSource("voc/2007")
    for rank in range(3):
        next(iter(source.examples("train", SIZE, size=9, shard=(3, rank))))
    expected = tfds.even_splits(source.tfds_split("train"), n=3, drop_remainder=True)
    assert [str(a) for a in asked] == [str(e) for e in expected] and len(set(map(str, asked))) == 3
    with pytest.raises(MtlError, match="shard index 3 is not in 0..2"):
        source.examples("train", SIZE, shard=(3, 3))
