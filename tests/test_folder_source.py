"""``--data folder:DIR``: Keras' one-folder-per-class layout as one classification task ``label``."""

import inspect
import warnings

import pytest
from labelled_pictures import write_picture

import mtl_keras as mk
from mtl_keras.data.folder_source import FolderSource
from mtl_keras.errors import MtlError


def _source(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return FolderSource(str(path))


def _classes_by_file(src):
    classes = src.tasks()["label"].classes
    return {name: classes[i] for name, i in zip(src.table.names, src.table.labels["label"])}


def test_class_folders_are_the_classes(tmp_path):
    for i in range(3):
        write_picture(tmp_path / "tulip" / f"{i}.png", i)
        write_picture(tmp_path / "daisy" / f"{i}.jpg", 10 + i)
    write_picture(tmp_path / "rose" / "garden" / "deep.png", 20)  # at any depth inside its class folder
    write_picture(tmp_path / "rose" / "r.png", 21)
    (tmp_path / "rose" / "notes.txt").write_text("ignored, as Keras ignores it")
    write_picture(tmp_path / ".cache" / "x.png", 30)  # hidden folders are no class
    write_picture(tmp_path / "loose.png", 31)  # in no class folder
    (tmp_path / "tulip" / "broken.png").write_text("not a picture")
    with pytest.warns(UserWarning) as caught:
        src = FolderSource(str(tmp_path))
    message = next(str(w.message) for w in caught if "problem(s)" in str(w.message))
    assert "loose.png: in no class folder" in message and "tulip/broken.png: not an image file" in message
    assert src.tasks()["label"].classes == ["daisy", "rose", "tulip"]
    by_file = _classes_by_file(src)
    assert len(by_file) == 8
    assert by_file["rose/garden/deep.png"] == "rose" and by_file["daisy/0.jpg"] == "daisy"
    assert by_file["tulip/2.png"] == "tulip"
    text = src.describe()
    assert "label  classification  class folders  3: daisy, rose, tulip" in text
    assert "split by a hash of each picture's path" in text


def test_the_split_of_a_picture_never_moves_when_pictures_are_added(tmp_path):
    for i in range(20):
        write_picture(tmp_path / ("a" if i % 2 else "b") / f"{i:02d}.png", i)
    before = dict(zip(_source(tmp_path).table.names, _source(tmp_path).table.splits))
    for i in range(20, 40):
        write_picture(tmp_path / ("a" if i % 2 else "b") / f"{i:02d}.png", i)
    after = dict(zip(_source(tmp_path).table.names, _source(tmp_path).table.splits))
    assert len(after) == 40 and all(after[k] == v for k, v in before.items())
    assert set(after.values()) == {"train", "val", "test"}


def test_train_val_test_folders_give_the_splits(tmp_path):
    for split, n in (("train", 4), ("validation", 2), ("test", 2)):
        for i in range(n):
            write_picture(tmp_path / split / ("cat" if i % 2 else "dog") / f"{i}.png", i)
    src = _source(tmp_path)
    assert src.tasks()["label"].classes == ["cat", "dog"]  # not train, validation, test
    assert src.table.split_counts() == {"train": 4, "val": 2, "test": 2}
    x, y, w = next(iter(mk.data.load(f"folder:{tmp_path}", split="test", image_size=32, batch_size=2)))
    assert x.shape == (2, 32, 32, 3) and sorted(y["label"].numpy().tolist()) == [0, 1]
    assert w["label"].numpy().tolist() == [1, 1]


def test_unusable_folders_are_one_error(tmp_path):
    write_picture(tmp_path / "only" / "a.png")
    with pytest.raises(MtlError, match="needs one folder per class \\(at least 2\\) .* found 1: only"):
        _source(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "only" / "a.png").unlink()
    with pytest.raises(MtlError, match="no pictures .* in the class folders of"):
        _source(tmp_path)
    with pytest.raises(MtlError, match="picture folder not found"):
        _source(tmp_path / "nowhere")
    with pytest.raises(MtlError, match="dataset 'folder:x' takes no option images; its options: flip"):
        mk.data.get_source("folder:x", images="y")


def test_declared_options_match_the_source_class():
    assert mk.data.source_options("folder:x") == frozenset(list(inspect.signature(FolderSource).parameters)[1:])
