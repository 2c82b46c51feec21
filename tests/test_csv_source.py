"""``--data csv:FILE``: column kinds, missing labels, splits, bad rows, whole-file errors, and a run end to end."""

import inspect
import json
import warnings

import numpy as np
import pytest
from labelled_pictures import append_rows, write_csv, write_picture
from PIL import Image

import mtl_keras as mk
from mtl_keras.cli import main
from mtl_keras.data import data_error
from mtl_keras.data.csv_source import CsvSource
from mtl_keras.errors import MtlError

SPECIES = ["cat", "dog", "fox"]


def _source(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return CsvSource(str(path), **options)


def _pictures(folder, n, prefix="img"):
    return [write_picture(folder / prefix / f"{i:03d}.png", i).relative_to(folder).as_posix() for i in range(n)]


def test_column_kinds_are_inferred(tmp_path):
    names = _pictures(tmp_path, 12)
    header = ["image", "species", "weight", "tags:indoor|night|people", "attr:hat", "attr:glasses", "notes", "caption"]
    rows = [[p, SPECIES[i % 3], f"{i / 2:.1f}", "1|0|1" if i % 2 else "night", str(i % 2), str(1 - i % 2), "same",
             f"picture number {i}"] for i, p in enumerate(names)]
    src = _source(write_csv(tmp_path / "labels.csv", header, rows))
    tasks = src.tasks()
    assert {n: t.kind for n, t in tasks.items()} == {
        "species": "classification", "weight": "regression", "tags": "multilabel", "attr": "multilabel"}
    assert tasks["species"].classes == SPECIES
    assert tasks["tags"].classes == ["indoor", "night", "people"] and tasks["attr"].classes == ["hat", "glasses"]
    assert src.csv.skipped == {"notes": "one value only ('same')", "caption": "every value differs (an identifier?)"}
    labels = src.table.labels
    assert labels["species"][:4].tolist() == [0, 1, 2, 0]
    assert labels["weight"][:3].tolist() == [0.0, 0.5, 1.0]
    # "1|0|1" is one 0/1 per class; "night" names the class present.
    assert labels["tags"][:2].tolist() == [[0, 1, 0], [1, 0, 1]]
    assert labels["attr"][:2].tolist() == [[0, 1], [1, 0]]


def test_labels_option_names_columns_and_kinds(tmp_path):
    names = _pictures(tmp_path, 6)
    header = ["file", "code", "Hair colour", "objects", "attr:hat", "attr:glasses"]
    rows = [[p, str([2, 10, 2, 1, 10, 1][i]), ["red", "dark"][i % 2], "car|tree" if i % 2 else "tree", "1", "0"]
            for i, p in enumerate(names)]
    csv_path = write_csv(tmp_path / "labels.csv", header, rows)
    src = _source(csv_path, labels=["grade=code:classification", "things=objects:multilabel", "extras=attr"])
    tasks = src.tasks()
    # The named tasks come first; their columns are not read again; other columns are still inferred.
    assert list(tasks) == ["grade", "things", "extras", "Hair_colour"]
    assert tasks["grade"].classes == ["1", "2", "10"]  # class codes in numeric order
    assert tasks["things"].classes == ["car", "tree"] and src.table.labels["things"][1].tolist() == [1, 1]
    assert tasks["extras"].classes == ["hat", "glasses"]
    assert _source(csv_path).tasks()["code"].kind == "regression"
    with pytest.raises(MtlError, match=r"label 'x=nope': no column 'nope'; columns: code, Hair colour"):
        _source(csv_path, labels=["x=nope"])
    with pytest.raises(MtlError, match="names a group of 0/1 columns, which can only be multilabel"):
        _source(csv_path, labels=["x=attr:regression"])
    with pytest.raises(MtlError, match="malformed label 'code'"):
        _source(csv_path, labels=["code"])


def test_empty_cells_are_missing_labels_of_that_task_only(tmp_path):
    names = _pictures(tmp_path, 5)
    header = ["image", "species", "weight", "tags:a|b", "split"]
    rows = [[names[0], "cat", "1.5", "1|0", "test"],
            [names[1], "", "2.5", "0|1", "test"],
            [names[2], "dog", "", "1|1", "test"],
            [names[3], "fox", "3", "", "test"],
            [names[4], "", "", "", "test"]]
    name = f"csv:{write_csv(tmp_path / 'labels.csv', header, rows)}"
    x, y, w = next(iter(mk.data.load(name, split="test", image_size=32, batch_size=5)))
    assert x.shape == (5, 32, 32, 3)
    assert w["species"].numpy().tolist() == [1, 0, 1, 1, 0]
    assert w["weight"].numpy().tolist() == [1, 1, 0, 1, 0]
    assert w["tags"].numpy().tolist() == [1, 1, 1, 0, 0]
    assert y["species"].numpy()[[0, 2, 3]].tolist() == [0, 1, 2]
    assert y["weight"].numpy()[:2, 0].tolist() == [1.5, 2.5]
    # The picture with no label at all still loads (every weight 0), it is not dropped.
    assert [w[t].numpy()[4] for t in ("species", "weight", "tags")] == [0, 0, 0]


def test_pictures_are_read_by_the_shared_reader(tmp_path):
    # A transparent RGBA picture comes out white, as demo.pictures composites alpha (the device does the same).
    (tmp_path / "img").mkdir()
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(tmp_path / "img" / "clear.png")
    write_picture(tmp_path / "img" / "b.png")
    csv_path = write_csv(tmp_path / "l.csv", ["image", "k", "split"],
                         [["img/clear.png", "a", "test"], ["img/b.png", "b", "test"]])
    example = next(iter(_source(csv_path).examples("test", 32)))
    assert example["image"].numpy().min() == 255


def test_split_column_and_a_hash_split_that_appended_rows_never_move(tmp_path):
    names = _pictures(tmp_path, 60)
    csv_path = write_csv(tmp_path / "labels.csv", ["image", "n"], [[p, str(i)] for i, p in enumerate(names[:40])])
    before = dict(zip(_source(csv_path).table.names, _source(csv_path).table.splits))
    assert set(before.values()) == {"train", "val", "test"}
    assert 24 <= list(before.values()).count("train") <= 38
    append_rows(csv_path, [[p, str(i)] for i, p in enumerate(names[40:], 40)])
    after = dict(zip(_source(csv_path).table.names, _source(csv_path).table.splits))
    assert len(after) == 60 and all(after[k] == v for k, v in before.items())

    splits = ["train", "validation", "TEST", "", "val", "nope"]
    csv_path = write_csv(tmp_path / "split.csv", ["image", "n", "split"],
                         [[p, str(i), s] for i, (p, s) in enumerate(zip(names, splits))])
    with pytest.warns(UserWarning, match=r"row 7 \(img/005.png\): split 'nope' is not train, val or test"):
        src = CsvSource(str(csv_path))
    got = dict(zip(src.table.names, src.table.splits))
    assert [got[f"row {r}: {names[r - 2]}"] for r in (2, 3, 4, 6)] == ["train", "val", "test", "val"]
    assert got[f"row 5: {names[3]}"] == before[f"row 5: {names[3]}"]  # an empty cell falls back to the hash
    assert "split by its split column" in src.describe()


def test_bad_rows_are_reported_with_row_and_file_and_the_rest_loads(tmp_path):
    names = _pictures(tmp_path, 4)
    (tmp_path / "img" / "notes.png").write_text("not a picture")
    write_picture(tmp_path / "img" / "tiny.png", side=8)
    rows = [[names[0], "cat", "1"], ["img/gone.png", "dog", "2"], ["img/notes.png", "cat", "3"],
            [names[1], "dog", "heavy"], ["img/tiny.png", "cat", "1"], [names[2], "cat", "2", "extra"],
            ["", "dog", "3"], [names[3], "dog", "4"]]
    for i in range(12):  # enough numbers that one word in the column is a bad cell, not a class
        rows.append([names[i % 4], "cat", str(i)])
    csv_path = write_csv(tmp_path / "labels.csv", ["image", "species", "weight"], rows)
    with pytest.warns(UserWarning) as caught:
        src = CsvSource(str(csv_path))
    message = next(str(w.message) for w in caught if "problem(s)" in str(w.message))
    for expected in ("row 3 (img/gone.png): file not found", "row 4 (img/notes.png): not an image file",
                     "row 5 (img/001.png): weight: 'heavy' is not a number", "row 6 (img/tiny.png): picture is 8x8",
                     "row 7: 4 cells, the header has 3", "row 8: no picture named"):
        assert expected in message
    # Bad pictures leave out their rows; a bad cell leaves out only that label.
    assert len(src.table) == 15
    row5 = list(src.table.names).index("row 5: img/001.png")
    assert src.table.present["weight"][row5] == 0 and src.table.present["species"][row5] == 1
    assert "row 3 (img/gone.png): file not found" in src.describe()


def test_a_picture_cut_short_is_named_with_its_row(tmp_path):
    good = write_picture(tmp_path / "a.png", 1)
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # the header reads; the pixels do not
    csv_path = write_csv(tmp_path / "l.csv", ["image", "k", "split"], [["a.png", "x", "test"], ["cut.png", "y", "test"]])
    name = f"csv:{csv_path}"
    with pytest.raises(Exception) as raised:
        list(mk.data.load(name, split="test", image_size=32, batch_size=2))
    message = str(data_error(raised.value, name))
    assert "row 3: cut.png" in message and "could not be read" in message


@pytest.mark.parametrize("header, rows, message", [
    (["species", "weight"], [["cat", "1"]], "has no picture column: name one image, file, filename"),
    (["image", "species"], [], "has a header but no rows"),
    (["image", "split"], [["a.png", "train"]], "has no label column, only image, split"),
    (["image", "notes"], [["a.png", "same"]], r"no column of .* can be a task \(notes: one value only"),
    (["image", "k", "k"], [["a.png", "1", "2"]], "column 'k' appears twice"),
    (["image", "k"], [["gone.png", "x"], ["gone2.png", "y"]], "none of the 2 rows of .* is usable: row 2 \\(gone.png\\)"),
])
def test_a_csv_wrong_as_a_whole_is_one_error(tmp_path, header, rows, message):
    write_picture(tmp_path / "a.png")
    with pytest.raises(MtlError, match=message):
        _source(write_csv(tmp_path / "labels.csv", header, rows))


def test_missing_files_and_folders_are_named(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(MtlError, match="empty.csv is empty: it needs a header row"):
        CsvSource(str(tmp_path / "empty.csv"))
    with pytest.raises(MtlError, match="CSV file not found: .*nope.csv"):
        CsvSource(str(tmp_path / "nope.csv"))
    with pytest.raises(MtlError, match="is a folder; csv: takes the CSV file itself"):
        CsvSource(str(tmp_path))
    write_csv(tmp_path / "l.csv", ["image", "k"], [["a.png", "x"]])
    with pytest.raises(MtlError, match="picture folder not found: .*pics"):
        CsvSource(str(tmp_path / "l.csv"), images=str(tmp_path / "pics"))


def test_declared_options_match_the_source_class():
    assert mk.data.source_options("csv:x.csv") == frozenset(list(inspect.signature(CsvSource).parameters)[1:])


def test_train_then_evaluate_reuses_the_saved_picture_folder_and_labels(tmp_path, capsys, monkeypatch):
    pictures = tmp_path / "pictures"
    header = ["image", "species", "weight", "split"]
    rows = []
    for i in range(24):
        write_picture(pictures / f"{i:02d}.png", i)
        rows.append([f"{i:02d}.png", SPECIES[i % 3] if i % 4 else "", str(i % 5) if i % 3 else "",
                     "train" if i < 16 else ("val" if i < 20 else "test")])
    write_csv(tmp_path / "sheet" / "labels.csv", header, rows)
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", "csv:sheet/labels.csv", "--images", "pictures", "--label", "size=weight:regression",
            "--trunk", "mobilenet_v3_small", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
            "--mixed-precision", "off", "--out", "run"]
    assert main(args) == 0
    out = tmp_path / "run"
    config = json.loads((out / "config.json").read_text())
    # Paths saved absolute: the run's data is found from any working directory.
    assert config["data"] == f"csv:{tmp_path / 'sheet' / 'labels.csv'}"
    assert config["data_options"] == {"images": str(pictures), "labels": ["size=weight:regression"]}
    assert [t["name"] for t in config["tasks"]] == ["size", "species"]
    assert config["tasks"][1]["classes"] == SPECIES
    # The model card the export writes names the CSV's classes, so the device prints them.
    from export.card import new_card

    card = new_card(mk.load_model(str(out / "model.keras"), compile=False).tasks, 32, {"data": config["data"]})
    assert {t["name"]: t["classes"] for t in card["tasks"]} == {"size": None, "species": SPECIES}
    capsys.readouterr()
    # No --images, no --label, another directory: the run's saved options find the pictures and the same tasks.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["evaluate", str(out / "model.keras"), "--split", "test"]) == 0
    metrics = json.loads((out / "metrics_test.json").read_text())["tasks"]
    assert set(metrics) == {"size", "species"}
    assert np.isfinite(metrics["size"]["mae"]) and 0 <= metrics["species"]["accuracy"] <= 1
