"""``--data-dir``: train passes it to the tfds source and saves it; evaluate/explain/export reuse or override it."""

import inspect
import json

import pytest
import tensorflow_datasets as tfds

import mtl_keras as mk
from export.__main__ import main as export_main
from mtl_keras.cli import main
from mtl_keras.data.coco import CocoJsonSource
from mtl_keras.data.tfds import TfdsSource
from mtl_keras.errors import MtlError

PETS = ["--data", "tfds:oxford_iiit_pet", "--tasks", "breed,species", "--trunk", "mobilenet_v3_small",
        "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--train-size", "4", "--val-size", "4",
        "--test-size", "4"]


def _record_data_dirs(mp) -> list:
    """Every ``data_dir`` a TfdsSource is built with (mock_data itself ignores the data dir)."""
    seen, init = [], TfdsSource.__init__

    def recording(self, name, data_dir=None, **options):
        seen.append(data_dir)
        init(self, name, data_dir=data_dir, **options)

    mp.setattr(TfdsSource, "__init__", recording)
    return seen


@pytest.fixture(scope="module")
def pets_run(tmp_path_factory):
    """A 1-epoch run on mock pets, trained from another folder with a relative ``--data-dir``."""
    root = tmp_path_factory.mktemp("data_dir")
    (root / "tfds").mkdir()
    with pytest.MonkeyPatch.context() as mp, tfds.testing.mock_data(num_examples=4):
        mp.chdir(root)
        seen = _record_data_dirs(mp)
        assert main(["train", *PETS, "--data-dir", "tfds", "--out", str(root / "run")]) == 0
    return root / "run", str(root / "tfds"), seen


@pytest.fixture
def seen_dirs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative paths must not resolve against the training folder
    with tfds.testing.mock_data(num_examples=4):
        yield _record_data_dirs(monkeypatch)


def test_train_gives_the_source_the_dir_and_records_it_absolute(pets_run):
    run_dir, data_dir, seen = pets_run
    assert seen and set(seen) == {data_dir}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data_options"] == {"data_dir": data_dir}
    assert config["args"]["data_dir"] == data_dir  # what --resume reads back


def test_evaluate_and_explain_reuse_the_saved_dir_or_take_a_new_one(pets_run, seen_dirs, tmp_path):
    run_dir, data_dir, _ = pets_run
    model = str(run_dir / "model.keras")
    assert main(["evaluate", model, "--size", "4", "--batch-size", "4"]) == 0
    assert seen_dirs and set(seen_dirs) == {data_dir}

    seen_dirs.clear()
    (tmp_path / "moved").mkdir()
    assert main(["explain", model, "--n", "2", "--data-dir", "moved", "--out", str(tmp_path / "cams")]) == 0
    assert seen_dirs and set(seen_dirs) == {str(tmp_path / "moved")}


@pytest.mark.parametrize("data", ["shapes", "digits", "coco:some/folder"])
def test_data_dir_for_a_source_without_one_is_a_one_line_error(tmp_path, capsys, data):
    out = tmp_path / "run"
    assert main(["train", "--data", data, "--data-dir", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"dataset {data!r} takes no --data-dir" in err and "\n" not in err
    assert not out.exists()  # refused before the run folder is made


def test_export_and_compare_check_data_dir_too(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"data": "shapes"}))
    assert export_main([str(tmp_path / "model.keras"), "--data-dir", str(tmp_path)]) == 2
    assert "error: dataset 'shapes' takes no --data-dir" in capsys.readouterr().err
    out = tmp_path / "compare"
    assert main(["compare", "--data", "digits", "--data-dir", str(tmp_path), "--out", str(out)]) == 2
    assert "error: dataset 'digits' takes no --data-dir" in capsys.readouterr().err and not out.exists()


def test_missing_data_dir_names_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    args = ["train", *PETS, "--data-dir", str(missing), "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: tfds data dir not found: {missing}"


def test_unknown_source_option_is_an_mtl_error_not_a_type_error():
    with pytest.raises(MtlError, match="dataset 'shapes' takes no option data_dir; its options: max_objects, seed"):
        mk.data.get_source("shapes", data_dir="/data")
    with pytest.raises(MtlError, match="dataset 'coco:x' takes no option data_dir; its options: flip, max_objects"):
        mk.data.get_source("coco:x", data_dir="/data")


@pytest.mark.parametrize("name, cls", [("tfds:voc/2007", TfdsSource), ("coco:x", CocoJsonSource)])
def test_declared_options_match_the_source_classes(name, cls):
    # The lazy tfds/coco factories spell their options out; they must not drift from the constructors.
    params = list(inspect.signature(cls).parameters)[1:]
    assert mk.data.source_options(name) == frozenset(params)
