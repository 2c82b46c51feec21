"""RunDir: a run folder's paths, config.json, data options, resume settings and reopening, without training."""

import argparse
import json
import os
import types

import pytest

from mtl_keras.errors import MtlError
from mtl_keras.run.folder import NO_DATA, PRE_RECIPE_SETTINGS, OpenRun, RunDir, data_options, run_config

TFDS_CONFIG = {"data": "tfds:oxford_iiit_pet", "data_options": {"data_dir": "/data/tfds"}, "trunk": "resnet50",
               "image_size": 64, "build": {"trunk": "resnet50"}, "policy": "float32",
               "args": {"epochs": 7, "optimizer": "sgd", "out": "/old/place", "resume": False, "force": True}}


@pytest.fixture
def saved(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_config(TFDS_CONFIG)
    return run


def test_config_round_trip_and_paths(saved, tmp_path):
    assert saved.read_config() == TFDS_CONFIG
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == TFDS_CONFIG
    # Written atomically: no temporary file is left beside it.
    assert sorted(os.listdir(tmp_path / "run")) == ["config.json"]
    root = str(tmp_path / "run")
    assert (saved.model, saved.config_path, saved.metrics, saved.history, saved.export, saved.backup) == tuple(
        os.path.join(root, n) for n in ("model.keras", "config.json", "metrics.json", "history.csv", "export", "backup"))
    # A model file of any name finds the config.json beside it.
    other = RunDir.of_model(tmp_path / "run" / "best.keras")
    assert other.path == root and other.model == str(tmp_path / "run" / "best.keras")
    assert other.read_config() == TFDS_CONFIG and run_config(other.model) == TFDS_CONFIG
    assert not saved.finished and not saved.interrupted


def test_a_worker_keeps_its_own_files(saved):
    worker = RunDir(saved.path, worker_rank=2)
    assert worker.home == os.path.join(saved.path, ".worker-2") and not worker.is_chief
    assert worker.model == os.path.join(worker.home, "model.keras") and worker.backup == os.path.join(worker.home, "backup")
    # Before it has its own copy the worker reads the chief's config; after, its own.
    assert worker.read_config()["args"]["epochs"] == 7
    worker.write_config({"args": {"epochs": 3}})
    assert worker.read_config() == {"args": {"epochs": 3}} and saved.read_config()["args"]["epochs"] == 7
    assert worker.resume_settings()["epochs"] == 3


def test_saved_data_options_apply_to_the_run_dataset_only(saved, tmp_path, monkeypatch):
    assert saved.choose_data() == ("tfds:oxford_iiit_pet", {"data_dir": "/data/tfds"})
    # Another dataset does not inherit the run's data dir.
    assert saved.choose_data("shapes") == ("shapes", {})
    # --data-dir wins over the saved one, and a relative one is made absolute against the working dir.
    monkeypatch.chdir(tmp_path)
    assert saved.choose_data(None, "moved") == ("tfds:oxford_iiit_pet", {"data_dir": str(tmp_path / "moved")})
    assert data_options("tfds:voc/2007", "~/tfds")["data_dir"] == os.path.expanduser("~/tfds")


@pytest.mark.parametrize("data", ["shapes", "digits", "coco:some/folder"])
def test_a_data_dir_for_a_dataset_without_one_is_refused(saved, data):
    with pytest.raises(MtlError, match=f"dataset {data!r} takes no --data-dir"):
        saved.choose_data(data, "/somewhere")
    with pytest.raises(MtlError, match=f"dataset {data!r} takes no --data-dir"):
        data_options(data, "/somewhere")


def test_a_data_dir_is_refused_before_the_model_is_read(tmp_path):
    run = RunDir(tmp_path)
    run.write_config({"data": "shapes"})
    # No model.keras there: the data-dir mistake is still the one reported.
    with pytest.raises(MtlError, match="dataset 'shapes' takes no --data-dir"):
        run.open(data_dir=tmp_path)
    with pytest.raises(MtlError, match="model file not found"):
        run.open()


def test_resume_settings(saved):
    settings = saved.resume_settings()
    # The invocation's own flags come from the new command line, never from the saved one.
    assert not {"out", "resume", "force"} & set(settings)
    assert settings["epochs"] == 7 and settings["optimizer"] == "sgd"
    # Flags the run was saved without take the values it trained with then, not today's defaults.
    for key in set(PRE_RECIPE_SETTINGS) - {"optimizer"}:
        assert settings[key] == PRE_RECIPE_SETTINGS[key]


def test_train_applies_resume_settings_to_a_copy(saved):
    from mtl_keras.cli.train import add_arguments, load_resume_config

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--out", saved.path, "--resume"])
    resumed = load_resume_config(args)
    assert (resumed.epochs, resumed.optimizer, resumed.out, resumed.resume) == (7, "sgd", saved.path, True)
    assert resumed.data == "shapes"  # the saved args hold no data: the parser's default stays
    assert args.epochs == 3 and args.optimizer == "adamw"  # the parsed flags are left as they were


def test_a_folder_without_config_json(tmp_path, capsys):
    run = RunDir(tmp_path / "empty")
    assert run.read_config() == {} and run_config(str(tmp_path / "empty" / "model.keras")) == {}
    assert run.choose_data() == (None, {})
    assert run.choose_data("shapes") == ("shapes", {})
    with pytest.raises(MtlError, match=r"nothing to resume in .*empty: it holds no config.json of an earlier run"):
        run.resume_settings()


def test_open_without_a_dataset_names_the_missing_config(tmp_path, monkeypatch):
    from mtl_keras.model import saving

    stub = types.SimpleNamespace(input_shape=(None, 48, 48, 3), build_config={"trunk": "mobilenet_v3_small"}, tasks=[])
    monkeypatch.setattr(saving, "load_model", lambda path, safe_mode=True, compile=True: stub)
    run = RunDir(tmp_path)
    with pytest.raises(MtlError) as e:
        run.open()
    assert str(e.value) == NO_DATA
    opened = run.open("shapes")
    assert isinstance(opened, OpenRun) and (opened.data, opened.image_size, opened.config) == ("shapes", 48, {})


def test_card_source_takes_the_run_fields(saved, monkeypatch):
    from mtl_keras.model import saving

    stub = types.SimpleNamespace(input_shape=(None, 64, 64, 3), build_config={"trunk": "resnet50"}, tasks=[])
    monkeypatch.setattr(saving, "load_model", lambda path, safe_mode=True, compile=True: stub)
    source = saved.open().card_source()
    assert source == {"model": os.path.abspath(saved.model), "data": "tfds:oxford_iiit_pet", "trunk": "resnet50",
                      "image_size": 64, "run_config": {k: TFDS_CONFIG[k] for k in ("data", "trunk", "image_size", "build")}}


def test_prepare_and_clear(tmp_path):
    run = RunDir(tmp_path / "r")
    run.prepare()
    assert os.path.isdir(run.path)
    with pytest.raises(MtlError, match="contradict"):
        run.prepare(resume=True, force=True)
    with pytest.raises(MtlError, match="no backup of an interrupted run"):
        run.prepare(resume=True)
    os.makedirs(run.backup)
    with pytest.raises(MtlError, match="holds an interrupted run"):
        run.prepare()
    run.prepare(resume=True)
    for name in ("model.keras", "metrics.json", "history.csv", "notes.txt"):
        (tmp_path / "r" / name).write_text("x")
    run.write_config({})
    with pytest.raises(MtlError, match="interrupted run"):
        run.prepare()
    os.rmdir(run.backup)
    with pytest.raises(MtlError, match="already holds a finished run"):
        run.prepare()
    run.prepare(force=True)
    run.clear()
    # The run's own files go; anything else the user put there stays.
    assert os.listdir(run.path) == ["notes.txt"]
