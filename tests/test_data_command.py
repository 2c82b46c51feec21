"""``mtl-keras data NAME``: what will train, printed before training."""

import pytest
from labelled_pictures import write_csv, write_picture

import mtl_keras as mk
from mtl_keras.cli import main
from mtl_keras.tasks import RegressionTask


def _lines(capsys):
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


def test_a_csv_prints_each_task_its_column_labels_and_classes_and_the_bad_rows(tmp_path, capsys):
    rows = [[write_picture(tmp_path / f"{i}.png", i).name, ["cat", "dog", "fox"][i % 3] if i % 4 else "",
             str(i), "1|0" if i % 2 else "0|1"] for i in range(8)]
    rows.append(["gone.png", "cat", "1", "1|1"])
    csv_path = write_csv(tmp_path / "labels.csv", ["image", "species", "weight", "tags:a|b"], rows)
    assert main(["data", f"csv:{csv_path}"]) == 0
    out, err = _lines(capsys)
    assert out[0].startswith(f"csv:{csv_path}: 8 pictures (train ") and "split by a hash" in out[0]
    assert out[1].split() == ["task", "kind", "from", "labelled", "classes"]
    assert out[2].split() == ["species", "classification", "column", "species", "6/8", "3:", "cat,", "dog,", "fox"]
    assert out[3].split() == ["weight", "regression", "column", "weight", "8/8", "-"]
    assert out[4].split() == ["tags", "multilabel", "column", "tags:a|b", "8/8", "2:", "a,", "b"]
    assert out[-1].strip() == "row 10 (gone.png): file not found"
    assert "UserWarning" not in err  # the printout lists the bad rows itself


def test_a_label_option_changes_the_printout(tmp_path, capsys):
    rows = [[write_picture(tmp_path / f"{i}.png", i).name, str(i % 3)] for i in range(6)]
    csv_path = write_csv(tmp_path / "labels.csv", ["image", "grade"], rows)
    assert main(["data", f"csv:{csv_path}", "--label", "grade=grade:classification"]) == 0
    out, _ = _lines(capsys)
    assert out[2].split()[:2] == ["grade", "classification"] and out[2].endswith("3: 0, 1, 2")


def test_a_folder_and_the_built_in_scenes(tmp_path, capsys):
    for i in range(4):
        write_picture(tmp_path / ("cat" if i % 2 else "dog") / f"{i}.png", i)
    assert main(["data", f"folder:{tmp_path}"]) == 0
    out, _ = _lines(capsys)
    assert out[2].split() == ["label", "classification", "class", "folders", "2:", "cat,", "dog"]
    assert main(["data", "digits"]) == 0
    out, _ = _lines(capsys)
    assert out[0] == "digits: built-in scenes rendered from seed 0 (train 4000, val 500, test 1000)"
    assert "digit    classification  the main object's class" in out[2] and out[2].endswith("10: 0, 1, 2, 3, 4, 5, ...")


def test_a_source_without_describe_lists_its_tasks(monkeypatch, capsys):
    class Bare:
        def tasks(self):
            return {"age": RegressionTask("age")}

    monkeypatch.setitem(mk.data.SOURCES, "bare", lambda: Bare())
    monkeypatch.setitem(mk.data.SOURCE_OPTIONS, "bare", frozenset())
    assert main(["data", "bare"]) == 0
    out, _ = _lines(capsys)
    assert out[0] == "bare" and out[2].split() == ["age", "regression", "-", "-"]


def test_without_a_name_it_lists_the_kinds_of_dataset(capsys):
    assert main(["data"]) == 0
    out, _ = _lines(capsys)
    assert "csv:FILE" in out[0] and "folder:DIR" in out[0] and "tfds:NAME" in out[0] and "shapes" in out[0]


@pytest.mark.parametrize("argv, message", [
    (["data", "shapes", "--images", "pics"], "dataset 'shapes' takes no --images"),
    (["data", "folder:x", "--label", "a=b"], "dataset 'folder:x' takes no --label"),
    (["data", "coco:x", "--data-dir", "d"], "dataset 'coco:x' takes no --data-dir"),
    (["data", "csv:/no/such.csv"], "CSV file not found: /no/such.csv"),
    (["data", "cifar"], "unknown dataset 'cifar'"),
])
def test_mistakes_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_every_command_that_reads_data_checks_the_new_flags(tmp_path, capsys):
    from export.__main__ import main as export_main

    (tmp_path / "config.json").write_text('{"data": "shapes"}')
    model = str(tmp_path / "model.keras")
    # Refused from the run's saved dataset, before the (missing) model is read.
    for argv in (["evaluate", model, "--images", "pics"], ["explain", model, "--label", "a=b"]):
        assert main(argv) == 2
        assert "error: dataset 'shapes' takes no --" in capsys.readouterr().err
    assert export_main([model, "--images", "pics"]) == 2
    assert "error: dataset 'shapes' takes no --images" in capsys.readouterr().err
    out = tmp_path / "compare"
    assert main(["compare", "--data", "digits", "--label", "a=b", "--out", str(out)]) == 2
    assert "error: dataset 'digits' takes no --label" in capsys.readouterr().err and not out.exists()
    assert main(["train", "--data", "digits", "--images", "pics", "--out", str(tmp_path / "run")]) == 2
    assert "error: dataset 'digits' takes no --images" in capsys.readouterr().err and not (tmp_path / "run").exists()
