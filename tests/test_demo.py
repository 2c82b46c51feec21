"""The on-device demo: TensorFlow-free, drawings that match predictions.json, bad inputs refused one by one."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from export_fixture import IMAGE_SIZE, TASKS, exported_run
from tensorflow_blocker import blocked_env


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture(scope="session")
def int8_model(exported):
    return os.path.join(exported["export"], "model_int8.tflite")


def _png(width, height, bit_depth, color_type, raw=b""):
    """PNG bytes with a chosen header, written by hand (Pillow cannot write 16-bit RGB or lie about size)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def demo_run(int8_model, tmp_path_factory):
    """The demo on one picture file and two built-in samples, in a process where TensorFlow cannot load."""
    root = tmp_path_factory.mktemp("demo")
    from demo.scenes import render_scene

    picture = root / "scene.png"
    Image.fromarray(render_scene(seed=5, split="test", index=7, image_size=96).image).save(picture)
    env = blocked_env(root)
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "demo", int8_model, str(picture), "--samples", "2", "--out", str(out)],
                          env=env, capture_output=True, text=True, cwd=str(root), timeout=120)
    return {"proc": proc, "out": out, "picture": picture,
            "predictions": json.loads((out / "predictions.json").read_text()) if proc.returncode == 0 else None}


def test_runs_without_tensorflow(demo_run):
    proc = demo_run["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "3 image(s) run, 0 refused" in proc.stdout
    assert "median" in proc.stdout and "images/s" in proc.stdout and "XNNPACK" in proc.stdout
    # A fresh process: LiteRT's once-per-process notice would be here if it were not held back.
    assert "INFO: Created TensorFlow Lite" not in proc.stderr
    out = demo_run["out"]
    assert (out / "index.html").is_file()
    html = (out / "index.html").read_text()
    for rec in demo_run["predictions"]["images"]:
        assert (out / rec["annotated"]).is_file() and rec["annotated"] in html
        assert sorted(rec["tasks"]) == sorted(TASKS)


def test_predictions_are_the_model_outputs(demo_run, int8_model):
    from demo.runner import LiteModel
    from demo.scenes import render_scene

    rec = next(r for r in demo_run["predictions"]["images"] if r["input"] == "sample:shapes/test/1")
    image = render_scene(seed=0, split="test", index=1, image_size=IMAGE_SIZE).image
    out = LiteModel(int8_model).predict(image[None])
    assert rec["tasks"]["shape"]["index"] == int(np.argmax(out["shape"][0]))
    np.testing.assert_allclose(rec["tasks"]["box"]["box_rel_yxyx"], out["box"][0], atol=1e-4)
    np.testing.assert_allclose(rec["tasks"]["count"]["value"], out["count"][0, 0], atol=1e-4)
    assert rec["truth"]["count"] >= 1


def test_box_is_drawn_where_predictions_say(demo_run):
    from demo.draw import view_size

    for rec in demo_run["predictions"]["images"]:
        w, h = view_size(*rec["size"])
        y0, x0, y1, x1 = rec["tasks"]["box"]["box_rel_yxyx"]
        drawn = rec["drawn"]["box"]
        assert drawn["xyxy"] == pytest.approx([x0 * w, y0 * h, x1 * w, y1 * h], abs=1)
        picture = np.asarray(Image.open(demo_run["out"] / rec["annotated"]).convert("RGB"))
        assert picture.shape[1] == w and picture.shape[0] > h  # the picture, then the caption panel
        left, top, right, bottom = drawn["xyxy"]
        mid_y, mid_x = (top + bottom) // 2, (left + right) // 2
        for y, x in [(mid_y, left + 1), (mid_y, right - 1), (bottom - 1, mid_x)]:
            assert tuple(picture[y, x]) == tuple(drawn["color"]), (rec["input"], y, x)
        captions = {k: v.get("caption") for k, v in rec["drawn"].items()}
        assert captions["shape"].startswith(f"shape: {rec['tasks']['shape']['label']} (")


def test_mask_and_objects_are_drawn():
    from demo.draw import annotate

    image = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 40:60] = 2
    tasks = [{"name": "mask", "kind": "segmentation", "classes": ["background", "a", "b"], "decoding": {"overlay_alpha": 0.5}},
             {"name": "objects", "kind": "detection", "classes": ["a", "b"]}]
    preds = {"mask": {"mask": mask, "areas": {"background": 0.92, "b": 0.08}},
             "objects": {"objects": [{"label": "a", "index": 0, "score": 0.9, "box_rel_yxyx": [0.5, 0.1, 0.9, 0.4]}]}}
    picture, drawn = annotate(image, tasks, preds)
    px = np.asarray(picture).astype(int)
    color = np.array(drawn["mask"]["colors"]["b"])
    # Inside the mask: half image, half class colour; outside it: untouched.
    np.testing.assert_allclose(px[16 * 6, 50 * 6], np.round(0.5 * 100 + 0.5 * color), atol=1)
    np.testing.assert_array_equal(px[300, 300], [100, 100, 100])
    [obj] = drawn["objects"]["objects"]
    assert obj["xyxy"] == [38, 192, 154, 346]
    assert tuple(px[269, 39]) == tuple(obj["color"])


def test_numpy_decoding_matches_the_library(exported):
    import mtl_keras as mk
    from demo import heads

    card = json.loads(open(os.path.join(exported["export"], "model_card.json")).read())
    rng = np.random.default_rng(1)
    for entry, task in zip(card["tasks"], mk.data.tasks_for("shapes", names=TASKS)):
        output = rng.random(task.num_outputs).astype(np.float32)
        ours, theirs = heads.decode(entry, output), task.decode(output)
        assert {k: ours[k] for k in theirs} == theirs, task.name


@pytest.fixture
def bad_inputs(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    good = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    Image.fromarray(good).save(d / "good.png")
    (d / "notes.png").write_text("this is text, not a picture")
    data = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(good[..., 0]).save(d / "gray.png")
    Image.fromarray(np.dstack([good, good[..., :1]])).save(d / "rgba.png")
    Image.fromarray((good[..., 0].astype(np.uint16) * 257)).save(d / "gray16.png")
    (d / "rgb16.png").write_bytes(_png(20, 20, 16, 2, b"".join(b"\x00" + b"\x12\x34" * 60 for _ in range(20))))
    Image.fromarray(good[:1, :1]).save(d / "dot.png")
    (d / "huge.png").write_bytes(_png(12000, 9000, 8, 2))
    (d / "bomb.png").write_bytes(_png(30000, 30000, 8, 2))
    (d / "empty.png").write_bytes(b"")
    return d


EXPECTED_REASONS = {
    "notes.png": "not an image file", "truncated.png": "truncated", "dot.png": "1x1 pixels",
    "huge.png": "over the 90 MP that are decoded safely", "bomb.png": "too large", "missing.png": "file not found",
    "empty.png": "empty file",
}
# Not refused any more: converted to 8-bit RGB, each conversion recorded (tests/test_pictures.py has them all).
CONVERTED = {"gray.png": ["grayscale → RGB"], "rgba.png": ["alpha composited on white"],
             "gray16.png": ["16-bit → 8-bit", "grayscale → RGB"], "rgb16.png": ["16-bit → 8-bit"]}


def test_bad_inputs_each_get_a_reason(int8_model, bad_inputs, tmp_path, capsys):
    from demo.__main__ import main

    paths = [str(bad_inputs / n) for n in sorted(EXPECTED_REASONS) + sorted(CONVERTED)]
    rc = main([int8_model, *paths, str(bad_inputs / "good.png"), "--out", str(tmp_path / "out")])
    assert rc == 1
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    ran = {os.path.basename(r["input"]): r["conversions"] for r in doc["images"]}
    assert ran == {**CONVERTED, "good.png": []}
    reasons = {os.path.basename(f["input"]): f["reason"] for f in doc["failures"]}
    assert sorted(reasons) == sorted(EXPECTED_REASONS)
    for name, words in EXPECTED_REASONS.items():
        assert words in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    err = capsys.readouterr().err
    assert err.count("skipped ") == len(EXPECTED_REASONS)


def test_folder_input_takes_only_pictures(int8_model, bad_inputs, tmp_path):
    from demo.__main__ import main
    from demo.images import find_images

    (bad_inputs / "readme.txt").write_text("not picked up from a folder")
    assert not [p for p in find_images([bad_inputs]) if p.endswith(".txt")]
    assert main([int8_model, str(bad_inputs / "good.png"), "--out", str(tmp_path / "o")]) == 0


@pytest.mark.parametrize("case", ["no_card", "not_listed", "altered", "not_tflite"])
def test_unusable_model_is_refused(exported, int8_model, tmp_path, capsys, case):
    from demo.__main__ import main

    target = tmp_path / "model_int8.tflite"
    if case == "no_card":
        shutil.copy(int8_model, target)
        expected = "no model_card.json beside"
    else:
        shutil.copy(os.path.join(exported["export"], "model_card.json"), tmp_path / "model_card.json")
        if case == "not_listed":
            target = tmp_path / "other.tflite"
            shutil.copy(int8_model, target)
            expected = "is not listed in model_card.json"
        elif case == "altered":
            shutil.copy(os.path.join(exported["export"], "model_fp32.tflite"), target)
            expected = "checksum differs"
        else:
            card = json.loads((tmp_path / "model_card.json").read_text())
            card["files"]["model_int8.tflite"]["sha256"] = None
            (tmp_path / "model_card.json").write_text(json.dumps(card))
            target.write_bytes(b"\x00" * 64)
            expected = "is not a TFLite model"
    assert main([str(target), "--samples", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
