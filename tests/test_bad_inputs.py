"""A catalogue of bad inputs across train, evaluate, export and demo.

Each case must end in exactly one line naming the problem (``error: ...``, or the demo's
``skipped NAME: reason`` for a picture), a non-zero exit status, no traceback, and nothing written
half-way: no model.keras / metrics / .tflite / predictions left behind, and a file that existed
before unchanged. One tiny trained run (mobilenet_v3_small, 32 px, shape + count) is shared.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from mtl_keras.cli import main as cli
from refusals import TINY, check_refused

CASES = []  # (command, case id) of every catalogue entry, counted by test_catalogue_size


def _export_main(argv):
    from export.__main__ import main

    return main(argv)


def _demo_main(argv):
    from demo.__main__ import main

    return main(argv)


# ----- shared data -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad_inputs") / "run"
    assert cli(["train", "--data", "shapes", "--tasks", "shape,count", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exported(run_dir):
    """An fp32 .tflite + model card of the shared run."""
    from export.stage import export_model

    export_model(str(run_dir / "model.keras"), modes=["fp32"], eval_size=4, timing_runs=1, log=lambda m: None)
    return run_dir / "export" / "model_fp32.tflite"


def _png16(width, height):
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x12\x34" * 3 * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write_picture(path, kind):
    """A picture file of one kind: good, text, truncated, tiny, empty, bomb, grayscale, rgba, rgb16."""
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3)).astype(np.uint8)
    if kind == "text":
        path.write_text("this is text, not a picture")
    elif kind == "truncated":
        Image.fromarray(rgb).save(path, format="PNG")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "grayscale":
        Image.fromarray(rgb[..., 0]).save(path, format="PNG")
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(path, format="PNG")
    elif kind == "rgb16":
        path.write_bytes(_png16(48, 40))
    elif kind == "tiny":
        Image.fromarray(rgb[:8, :8]).save(path, format="PNG")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bomb":  # a 900 MP header with no data: Pillow's decompression-bomb check stops it
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    else:
        Image.fromarray(rgb).save(path, format="PNG")
    return path


def coco_dir(root, bad_kind=None, images=None):
    """A 4-image COCO folder (ids 10 test, 11 val, 12-13 train); image 12 of kind ``bad_kind``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    ims = images if images is not None else [
        {"id": i, "file_name": f"im{i}.png", "width": 48, "height": 40} for i in (10, 11, 12, 13)]
    for im in ims:
        write_picture(root / "images" / im["file_name"], bad_kind if im["id"] == 12 else "good")
    anns = [{"id": k, "image_id": im["id"], "category_id": 1 + k % 2, "bbox": [4, 4, 20 + k, 16]}
            for k, im in enumerate(ims)]
    doc = {"images": ims, "annotations": anns, "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def bad_source():
    """Register test-only sources whose labels are wrong; removed afterwards."""
    import tensorflow as tf

    from mtl_keras import data
    from mtl_keras.data.scenes import ScenesSource

    class Relabelled(ScenesSource):
        def __init__(self, task, value, **kw):
            super().__init__("shapes", **kw)
            self.task, self.value = task, value

        def examples(self, split, image_size, size=None):
            def relabel(ex):
                labels = dict(ex["labels"])
                old = tf.convert_to_tensor(labels[self.task])
                labels[self.task] = tf.fill(tf.shape(old), tf.cast(self.value, old.dtype))
                return {**ex, "labels": labels}

            return super().examples(split, image_size, size).map(relabel)

    names = []

    def register(name, task, value):
        data.register_source(name, lambda **kw: Relabelled(task, value, **kw))
        names.append(name)
        return name

    yield register
    for n in names:
        data.SOURCES.pop(n, None)


# ----- train -----------------------------------------------------------------------------------
TRAIN_ARGS = [
    ("unknown_dataset", ["--data", "cifar"], ["unknown dataset 'cifar'"]),
    ("unknown_task", ["--tasks", "shape,colour"], ["no label for task 'colour'"]),
    ("task_of_other_dataset", ["--tasks", "digit"], ["no label for task 'digit'"]),
    ("unknown_trunk", ["--trunk", "vgg"], ["unknown trunk 'vgg'"]),
    ("unknown_balancer", ["--balancer", "magic"], ["balancer", "'magic'"]),
    ("unknown_strategy", ["--strategy", "warp"], ["unknown strategy 'warp'"]),
    ("image_below_trunk_minimum", ["--image-size", "20"], ["at least 32"]),
    ("zero_epochs", ["--epochs", "0"], ["--epochs must be a positive integer"]),
    ("negative_epochs", ["--epochs", "-3"], ["--epochs must be a positive integer, got -3"]),
    ("zero_batch_size", ["--batch-size", "0"], ["--batch-size must be a positive integer"]),
    ("negative_batch_size", ["--batch-size", "-8"], ["--batch-size must be a positive integer"]),
    ("loss_weight_without_value", ["--loss-weights", "box5"], ["malformed --loss-weights entry 'box5'"]),
    ("loss_weight_not_a_number", ["--loss-weights", "box=heavy"], ["'box'", "not a number"]),
    ("loss_weight_untrained_task", ["--loss-weights", "count=2"], ["count", "not trained here"]),
    ("missing_data_dir", ["--data", "coco:/no/such/folder"], ["COCO data dir not found"]),
]
CASES += [("train", c[0]) for c in TRAIN_ARGS]


@pytest.mark.parametrize("case, extra, words", TRAIN_ARGS, ids=[c[0] for c in TRAIN_ARGS])
def test_train_rejects_bad_arguments(tmp_path, capsys, case, extra, words):
    out = tmp_path / "r"
    argv = ["train", "--data", "shapes", "--tasks", "shape,box", *TINY, "--out", out, *extra]
    check_refused(capsys, cli, argv, *words, absent=[out / "model.keras", out / "config.json"])


COCO_CASES = [
    ("coco_dir_without_json", ["holds no annotations.json"]),
    ("coco_json_malformed", ["is not valid JSON", "line 1"]),
    ("coco_json_no_images", ["'images' is empty"]),
    ("coco_json_missing_files", ["1 image file(s) named in the COCO JSON are missing", "im12.png"]),
    ("coco_category_out_of_range", ["annotation #2 has category_id 7", "categories: [1, 2]"]),
    ("coco_bbox_malformed", ["annotation #0 bbox must be [x, y, width, height]"]),
]
CASES += [("train", c[0]) for c in COCO_CASES]


@pytest.mark.parametrize("case, words", COCO_CASES, ids=[c[0] for c in COCO_CASES])
def test_train_rejects_bad_coco_data(tmp_path, capsys, case, words):
    root = coco_dir(tmp_path / "data")
    doc = json.loads((root / "annotations.json").read_text())
    if case == "coco_dir_without_json":
        (root / "annotations.json").unlink()
    elif case == "coco_json_malformed":
        (root / "annotations.json").write_text('{"images": [')
    elif case == "coco_json_no_images":
        doc["images"], doc["annotations"] = [], []
    elif case == "coco_json_missing_files":
        (root / "images" / "im12.png").unlink()
    elif case == "coco_category_out_of_range":
        doc["annotations"][2]["category_id"] = 7
    elif case == "coco_bbox_malformed":
        doc["annotations"][0]["bbox"] = [4, 4, 20]
    if case in ("coco_json_no_images", "coco_category_out_of_range", "coco_bbox_malformed"):
        (root / "annotations.json").write_text(json.dumps(doc))
    out = tmp_path / "r"
    argv = ["train", "--data", f"coco:{root}", "--tasks", "category", *TINY, "--out", out]
    check_refused(capsys, cli, argv, *words, absent=[out / "model.keras", out / "config.json"])


PIPELINE_CASES = [
    ("class_label_out_of_range", ("shape", 9), "shape,box", ["task 'shape'", "label 9", "0..5"]),
    ("negative_class_label", ("shape", -4), "shape,box", ["task 'shape'", "label -4", "0..5"]),
    ("nan_regression_label", ("count", float("nan")), "shape,count", ["task 'count'", "nan", "finite"]),
    ("inf_box_label", ("box", float("inf")), "box", ["task 'box'", "inf", "finite"]),
    ("multilabel_value_above_one", ("present", 3.0), "present", ["task 'present'", "[0, 1]"]),
]
CASES += [("train", c[0]) for c in PIPELINE_CASES]


@pytest.mark.parametrize("case, relabel, tasks, words", PIPELINE_CASES, ids=[c[0] for c in PIPELINE_CASES])
def test_train_rejects_bad_labels(tmp_path, capsys, bad_source, case, relabel, tasks, words):
    name = bad_source(f"bad_{case}", *relabel)
    out = tmp_path / "r"
    argv = ["train", "--data", name, "--tasks", tasks, *TINY, "--out", out]
    check_refused(capsys, cli, argv, *words, absent=[out / "model.keras", out / "metrics.json"])


@pytest.mark.parametrize("kind, words", [("text", ["not an image file"]), ("truncated", ["truncated or corrupt"])],
                         ids=["non_image_file", "truncated_file"])
def test_train_names_undecodable_images(tmp_path, capsys, kind, words):
    root = coco_dir(tmp_path / "data", bad_kind=kind)
    out = tmp_path / "r"
    argv = ["train", "--data", f"coco:{root}", "--tasks", "category", *TINY, "--out", out]
    check_refused(capsys, cli, argv, "1 image file(s) of the data could not be read", "im12.png: ", *words,
                  absent=[out / "model.keras", out / "metrics.json"])


CASES += [("train", "non_image_file"), ("train", "truncated_file")]


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "rgb16"])
def test_train_converts_other_pixel_formats_to_rgb8(tmp_path, kind):
    """Not refused in training: COCO itself holds grayscale JPEGs; the shared reader gives 8-bit RGB (alpha on white)."""
    import tensorflow as tf

    from mtl_keras.data.coco import CocoJsonSource

    root = coco_dir(tmp_path / "data", bad_kind=kind)
    [ex] = [e for e in CocoJsonSource(str(root)).examples("train", 32, size=1)]
    image = ex["image"].numpy()
    assert image.shape == (40, 48, 3) and image.dtype == np.uint8
    reference = np.asarray(Image.open(root / "images" / "im12.png").convert("RGBA")).astype(int)
    alpha = reference[..., 3:]
    reference = (reference[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255  # composited on white
    if kind == "rgb16":  # 0x1234 in every channel, scaled to 8 bits
        assert set(np.unique(image)) == {0x12}
    else:
        np.testing.assert_array_equal(image, reference)
    assert tf.reduce_max(image) > 0


@pytest.mark.parametrize("case", ["out_is_a_file", "out_under_a_file"])
def test_train_rejects_an_unusable_out(tmp_path, capsys, case):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    out = blocker if case == "out_is_a_file" else blocker / "run"
    words = ["exists and is not a directory"] if case == "out_is_a_file" else ["cannot create directory"]
    argv = ["train", "--data", "shapes", "--tasks", "shape", *TINY, "--out", out]
    check_refused(capsys, cli, argv, *words, unchanged=[blocker])


CASES += [("train", "out_is_a_file"), ("train", "out_under_a_file")]


def test_train_keeps_a_finished_run(run_dir, capsys):
    argv = ["train", "--data", "shapes", "--tasks", "shape", *TINY, "--out", run_dir]
    check_refused(capsys, cli, argv, "already holds a finished run", "--force",
                  unchanged=[run_dir / "model.keras", run_dir / "metrics.json", run_dir / "config.json"])


CASES += [("train", "finished_run_without_force")]


# ----- evaluate --------------------------------------------------------------------------------
def _not_a_zip(tmp_path):
    p = tmp_path / "model.keras"
    p.write_text("not a model")
    return p, ["is not a .keras model file"]


def _zip_without_model(tmp_path):
    p = tmp_path / "model.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "a zip, but no Keras model")
    return p, ["could not load"]


def _plain_keras_model(tmp_path):
    import keras

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    p = tmp_path / "model.keras"
    model.save(p)
    return p, ["holds a Functional", "not an mtl_keras multi-task model"]


def _missing(tmp_path):
    return tmp_path / "nope.keras", ["model file not found"]


def _weights_file(tmp_path):
    p = tmp_path / "model.weights.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    return p, ["is not a .keras model file"]


MODEL_FILES = {"missing_model": _missing, "not_a_zip": _not_a_zip, "zip_without_model": _zip_without_model,
               "plain_keras_model": _plain_keras_model, "weights_file_not_model": _weights_file}
CASES += [("evaluate", k) for k in MODEL_FILES]


@pytest.mark.parametrize("case", sorted(MODEL_FILES))
def test_evaluate_rejects_files_that_are_not_models(tmp_path, capsys, case):
    path, words = MODEL_FILES[case](tmp_path)
    check_refused(capsys, cli, ["evaluate", path, "--data", "shapes", "--size", "4"], *words,
                  absent=[tmp_path / "metrics_test.json"])


EVALUATE_ARGS = [
    ("data_without_the_models_tasks", ["--data", "digits"], ["no label for task 'shape'"]),
    ("evaluate_unknown_dataset", ["--data", "cifar"], ["unknown dataset 'cifar'"]),
    ("evaluate_unknown_split", ["--split", "holdout"], ["unknown split 'holdout'"]),
    ("evaluate_zero_batch_size", ["--batch-size", "0"], ["--batch-size must be a positive integer"]),
]
CASES += [("evaluate", c[0]) for c in EVALUATE_ARGS]


@pytest.mark.parametrize("case, extra, words", EVALUATE_ARGS, ids=[c[0] for c in EVALUATE_ARGS])
def test_evaluate_rejects_bad_arguments(run_dir, tmp_path, capsys, case, extra, words):
    out = tmp_path / "m.json"
    check_refused(capsys, cli, ["evaluate", run_dir / "model.keras", "--size", "4", "--out", out, *extra], *words,
                  absent=[out], unchanged=[run_dir / "metrics.json"])


def test_evaluate_rejects_an_out_under_a_file(run_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    check_refused(capsys, cli, ["evaluate", run_dir / "model.keras", "--size", "4", "--out", blocker / "m.json"],
                  "file", "is not a directory", unchanged=[blocker])


CASES += [("evaluate", "out_under_a_file")]


# ----- export ----------------------------------------------------------------------------------
def test_export_rejects_files_that_are_not_models(tmp_path, capsys):
    path, words = _zip_without_model(tmp_path)
    check_refused(capsys, _export_main, [path, "--modes", "fp32", "--data", "shapes"], *words,
                  absent=[tmp_path / "export"])


@pytest.mark.parametrize("case", ["export_out_is_a_file", "export_out_under_a_file", "export_unknown_mode",
                                  "export_data_without_the_models_tasks", "export_zero_calibration_size"])
def test_export_rejects_bad_arguments(run_dir, tmp_path, capsys, case):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    out, extra = tmp_path / "exp", []
    words = {
        "export_out_is_a_file": ["exists and is not a directory"],
        "export_out_under_a_file": ["cannot create directory"],
        "export_unknown_mode": ["unknown export mode 'int4'"],
        "export_data_without_the_models_tasks": ["no label for task 'shape'"],
        "export_zero_calibration_size": ["--calibration-size must be a positive integer"],
    }[case]
    if case == "export_out_is_a_file":
        out = blocker
    elif case == "export_out_under_a_file":
        out = blocker / "exp"
    elif case == "export_unknown_mode":
        extra = ["--modes", "fp32,int4"]
    elif case == "export_data_without_the_models_tasks":
        extra = ["--data", "digits"]
    else:
        extra = ["--calibration-size", "0"]
    argv = [run_dir / "model.keras", "--modes", "fp32", "--eval-size", "4", "--timing-runs", "1", "--out", out, *extra]
    check_refused(capsys, _export_main, argv, *words, unchanged=[blocker],
                  absent=[] if out == blocker else [out / "model_fp32.tflite", out / "model_card.json"])


CASES += [("export", "zip_without_model")] + [("export", c) for c in (
    "export_out_is_a_file", "export_out_under_a_file", "export_unknown_mode",
    "export_data_without_the_models_tasks", "export_zero_calibration_size")]


# ----- demo ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["tflite_without_card", "tflite_not_a_model", "demo_out_is_a_file"])
def test_demo_rejects_unusable_models_and_outputs(exported, tmp_path, capsys, case):
    import shutil

    picture = write_picture(tmp_path / "good.png", "good")
    out = tmp_path / "out"
    model = tmp_path / "model_fp32.tflite"
    if case == "tflite_without_card":
        shutil.copy(exported, model)
        words = ["no model_card.json beside"]
    elif case == "tflite_not_a_model":
        card = json.loads((exported.parent / "model_card.json").read_text())
        card["files"]["model_fp32.tflite"]["sha256"] = None
        (tmp_path / "model_card.json").write_text(json.dumps(card))
        model.write_bytes(b"\x00" * 64)
        words = ["is not a TFLite model"]
    else:
        model = exported
        out = tmp_path / "file"
        out.write_text("keep me")
        words = ["--out", "is not a folder that can be created"]
    check_refused(capsys, _demo_main, [model, picture, "--out", out], *words,
                  absent=[] if case == "demo_out_is_a_file" else [out / "predictions.json"],
                  unchanged=[out] if case == "demo_out_is_a_file" else [])


CASES += [("demo", c) for c in ("tflite_without_card", "tflite_not_a_model", "demo_out_is_a_file")]

# Grayscale, RGBA and 16-bit pictures are converted now, not refused (tests/test_pictures.py).
DEMO_PICTURES = {"text": "not an image file", "truncated": "truncated", "tiny": "at least 16x16 is needed",
                 "empty": "empty file (0 bytes)", "bomb": "too large to decode safely"}
CASES += [("demo", f"picture_{k}") for k in DEMO_PICTURES]


@pytest.mark.parametrize("kind", sorted(DEMO_PICTURES))
def test_demo_refuses_each_bad_picture_with_a_reason(exported, tmp_path, capsys, kind):
    picture = write_picture(tmp_path / f"{kind}.png", kind)
    out = tmp_path / "out"
    status = _demo_main([str(exported), str(picture), "--out", str(out)])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 1 and "Traceback" not in captured.err
    assert len(lines) == 1 and lines[0].startswith(f"skipped {picture}: ") and DEMO_PICTURES[kind] in lines[0]
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["images"] == [] and [f["input"] for f in doc["failures"]] == [str(picture)]
    assert not [p for p in os.listdir(out) if p.endswith(".png")], "an annotated picture was written for a refused input"


def test_catalogue_size():
    """The issue asks for at least 25 distinct cases across the four commands."""
    assert len(CASES) == len(set(CASES)) and len(CASES) >= 25
    assert {c for c, _ in CASES} == {"train", "evaluate", "export", "demo"}


# ----- safe loading --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    """A small multi-task model (shape + count) with a Lambda layer, saved beside a config.json."""
    import keras

    import mtl_keras as mk

    tasks = mk.data.tasks_for("shapes", names=["shape", "count"])
    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Lambda(lambda t: t / 255.0, name="scale")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = {t.name: t.output_layer()(keras.layers.Dense(t.num_outputs)(x)) for t in tasks}
    model = mk.model.MultiTaskModel(inputs=image, outputs=outputs, tasks=tasks, name="with_lambda")
    root = tmp_path_factory.mktemp("lambda")
    model.save(root / "model.keras")
    (root / "config.json").write_text(json.dumps({"data": "shapes"}))
    return root / "model.keras"


def test_evaluate_refuses_a_lambda_unless_unsafe(lambda_model, capsys):
    metrics = lambda_model.parent / "metrics_test.json"
    check_refused(capsys, cli, ["evaluate", lambda_model, "--size", "4"], "safe mode", "Lambda", "--unsafe",
                  absent=[metrics])
    assert cli(["evaluate", str(lambda_model), "--size", "4", "--unsafe"]) == 0
    assert set(json.loads(metrics.read_text())["tasks"]) == {"shape", "count"}


def test_export_refuses_a_lambda(lambda_model, tmp_path, capsys):
    out = tmp_path / "exp"
    check_refused(capsys, _export_main, [lambda_model, "--modes", "fp32", "--out", out], "safe mode", "--unsafe",
                  absent=[out])


def test_export_unsafe_gets_past_loading(lambda_model, tmp_path, monkeypatch):
    """--unsafe reaches the model (stopped right after loading, to keep the test fast)."""
    from mtl_keras.model import saving

    loaded, original = [], saving.load_model

    def stop(path, safe_mode=True, compile=True):
        loaded.append(original(path, safe_mode=safe_mode, compile=compile))
        raise KeyboardInterrupt

    monkeypatch.setattr(saving, "load_model", stop)
    assert _export_main([str(lambda_model), "--modes", "fp32", "--out", str(tmp_path / "exp"), "--unsafe"]) == 130
    assert [m.name for m in loaded] == ["with_lambda"]


CASES += [("evaluate", "lambda_layer"), ("export", "lambda_layer")]
