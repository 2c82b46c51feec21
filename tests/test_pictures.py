"""One way to read a picture: every kind of file through the reader, the device runner and training.

The catalogue (tests/picture_catalogue.py) holds grayscale, RGBA, palette (with and without a
transparent colour), CMYK, 16-bit gray and RGB, animated GIF and WebP, EXIF-rotated and 6000x4000
JPEGs, and the refused kinds: too small, truncated, not an image, empty.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from export_fixture import IMAGE_SIZE, exported_run
from picture_catalogue import BROKEN, LARGE, VALID, write_catalogue
from refusals import TINY, check_refused


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalogue")
    rgb = write_catalogue(folder)
    return folder, rgb


# ----- the reader alone --------------------------------------------------------------------------
def test_every_valid_kind_is_read_with_its_conversions(catalogue):
    from demo.pictures import read_picture

    folder, _ = catalogue
    for name, notes in VALID.items():
        pixels, got = read_picture(folder / name, size=IMAGE_SIZE)
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3, name
        assert got == notes, (name, got)


def test_every_broken_kind_is_refused_with_one_line(catalogue):
    from demo.pictures import ImageError, read_picture

    folder, _ = catalogue
    for name, words in BROKEN.items():
        with pytest.raises(ImageError) as e:
            read_picture(folder / name, size=IMAGE_SIZE)
        assert words in str(e.value) and "\n" not in str(e.value), (name, str(e.value))


def test_converted_pixels_are_right(catalogue):
    from demo.pictures import read_picture

    folder, rgb = catalogue
    gray = np.repeat(rgb[..., :1], 3, axis=2)
    np.testing.assert_array_equal(read_picture(folder / "gray.png")[0], gray)
    # 8-bit values saved as v * 257 come back exactly, through Pillow's I;16 and its RGB;16B decoding.
    np.testing.assert_array_equal(read_picture(folder / "gray16.png")[0], gray)
    np.testing.assert_array_equal(read_picture(folder / "rgb16.png")[0], rgb)
    # Alpha ramps 0..255 left to right: left column is the background, right column the colour.
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))[..., None].astype(int)
    on_white = (rgb.astype(int) * alpha + 255 * (255 - alpha) + 127) // 255
    np.testing.assert_array_equal(read_picture(folder / "rgba.png")[0], on_white)
    on_black, notes = read_picture(folder / "rgba.png", background=(0, 0, 0))
    np.testing.assert_array_equal(on_black, (rgb.astype(int) * alpha + 127) // 255)
    assert notes == ["alpha composited on black"]
    raw = np.asarray(Image.open(folder / "exif_rotated.jpg").convert("RGB"))
    np.testing.assert_array_equal(read_picture(folder / "exif_rotated.jpg")[0], np.rot90(raw, k=-1))
    first = np.asarray(Image.open(folder / "animated.gif").convert("RGB"))
    np.testing.assert_array_equal(read_picture(folder / "animated.gif")[0], first)
    np.testing.assert_array_equal(read_picture(folder / "animated.webp")[0], rgb)  # lossless first frame
    cmyk = np.asarray(read_picture(folder / "cmyk.jpg")[0], int)
    assert np.abs(cmyk - rgb).mean() < 12  # JPEG-lossy, but the colours, not inverted ones


def test_a_large_jpeg_is_decoded_small(catalogue):
    from demo.pictures import read_picture

    folder, _ = catalogue
    start = time.perf_counter()
    pixels, notes = read_picture(folder / "large.jpg", size=IMAGE_SIZE)
    seconds = time.perf_counter() - start
    assert pixels.shape == (LARGE[1] // 8, LARGE[0] // 8, 3) and notes == VALID["large.jpg"]
    assert seconds < 1.0, seconds  # a full 24 MP decode takes several times longer
    # A model that needs more pixels gets a smaller reduction, never fewer pixels than it needs.
    pixels, notes = read_picture(folder / "large.jpg", size=1500)
    assert pixels.shape == (LARGE[1] // 2, LARGE[0] // 2, 3), notes


def test_limits_are_stated(tmp_path):
    from demo.pictures import MAX_PIXELS, ImageError, read_picture
    from picture_catalogue import png_bytes

    (tmp_path / "huge.png").write_bytes(png_bytes(12000, 9000, 8, 2))  # 108 MP header, under Pillow's bomb limit
    with pytest.raises(ImageError, match=f"over the {MAX_PIXELS / 1e6:.0f} MP that are decoded safely"):
        read_picture(tmp_path / "huge.png")
    (tmp_path / "bomb.png").write_bytes(png_bytes(30000, 30000, 8, 2))
    with pytest.raises(ImageError, match="too large to decode safely"):
        read_picture(tmp_path / "bomb.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "edge.png")
    assert read_picture(tmp_path / "edge.png")[0].shape == (16, 16, 3)  # MIN_SIDE itself is accepted


# ----- the device runner ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture(scope="module")
def runner_run(exported, catalogue, tmp_path_factory):
    """``python -m demo`` (in-process) on the catalogue folder, keeping the arrays the runner read."""
    import demo.images
    from demo.__main__ import main

    folder, _ = catalogue
    out = tmp_path_factory.mktemp("runner") / "out"
    seen, real = {}, demo.images.read_picture

    def spy(path, *args, **kwargs):
        pixels, notes = real(path, *args, **kwargs)
        seen[os.path.basename(path)] = pixels
        return pixels, notes

    demo.images.read_picture = spy
    try:
        rc = main([os.path.join(exported["export"], "model_int8.tflite"), str(folder), "--out", str(out)])
    finally:
        demo.images.read_picture = real
    return {"rc": rc, "out": out, "arrays": seen, "doc": json.loads((out / "predictions.json").read_text())}


def test_runner_predicts_every_valid_picture_and_names_the_broken(runner_run):
    assert runner_run["rc"] == 1
    doc = runner_run["doc"]
    ran = {os.path.basename(r["input"]): r for r in doc["images"]}
    assert sorted(ran) == sorted(VALID)
    for name, notes in VALID.items():
        assert ran[name]["conversions"] == notes, name
        assert sorted(ran[name]["tasks"]) and (runner_run["out"] / ran[name]["annotated"]).is_file()
    assert ran["large.jpg"]["size"] == [LARGE[0] // 8, LARGE[1] // 8]
    reasons = {os.path.basename(f["input"]): f["reason"] for f in doc["failures"]}
    assert sorted(reasons) == sorted(BROKEN)
    for name, words in BROKEN.items():
        assert words in reasons[name], (name, reasons[name])
    html = (runner_run["out"] / "index.html").read_text()
    assert "converted: grayscale → RGB" in html and "converted: EXIF rotated 90°" in html


# ----- training ------------------------------------------------------------------------------------
def coco_folder(root, names):
    """A COCO folder (train/val/test JSON alike) over catalogue files ``names`` in ``root/images``."""
    images, annotations = [], []
    for i, name in enumerate(sorted(names)):
        path = root / "images" / name
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # a broken file: the JSON still names it, as a user's would
            w, h = 48, 40
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [2, 2, w // 2, h // 2]})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    for split in ("train", "val", "test"):
        (root / f"{split}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def coco_valid(catalogue, tmp_path_factory):
    folder, _ = catalogue
    root = tmp_path_factory.mktemp("coco_valid")
    shutil.copytree(folder, root / "images", ignore=shutil.ignore_patterns(*BROKEN))
    return coco_folder(root, VALID)


def test_training_reads_the_runners_pixels(runner_run, coco_valid):
    from mtl_keras.data.coco import CocoJsonSource

    src = CocoJsonSource(str(coco_valid))
    images = src._images["train"]
    read = [ex["image"].numpy() for ex in src.examples("train", IMAGE_SIZE)]
    assert len(read) == len(VALID)
    for im, pixels in zip(images, read):
        np.testing.assert_array_equal(pixels, runner_run["arrays"][im["file_name"]], err_msg=im["file_name"])


def test_training_on_the_catalogue(coco_valid, tmp_path, capsys):
    from mtl_keras.cli import main as cli

    n = str(len(VALID))
    out = tmp_path / "run"
    argv = ["train", "--data", f"coco:{coco_valid}", "--tasks", "category", *TINY,
            "--batch-size", n, "--train-size", n, "--val-size", n, "--test-size", n, "--out", str(out)]
    assert cli(argv) == 0, capsys.readouterr().err[-2000:]
    assert (out / "model.keras").is_file()


def test_training_names_every_broken_picture(catalogue, tmp_path, capsys):
    from mtl_keras.cli import main as cli

    folder, _ = catalogue
    shutil.copytree(folder, tmp_path / "data" / "images")
    root = coco_folder(tmp_path / "data", [*VALID, *BROKEN])
    out = tmp_path / "run"
    argv = ["train", "--data", f"coco:{root}", "--tasks", "category", *TINY, "--out", out]
    words = [f"{len(BROKEN)} image file(s) of the data could not be read"]
    words += [f"{name}: {reason}" for name, reason in BROKEN.items()]
    check_refused(capsys, cli, argv, *words, absent=[out / "model.keras"])


# ----- the demo's notes ----------------------------------------------------------------------------
def test_no_samples_note_without_samples(exported, catalogue, tmp_path, capsys):
    """A model trained on a user's folder: the note about --samples only when --samples is given."""
    from demo.__main__ import main

    folder, _ = catalogue
    model_dir = tmp_path / "coco_model"
    model_dir.mkdir()
    shutil.copy(os.path.join(exported["export"], "model_int8.tflite"), model_dir)
    card = json.loads(open(os.path.join(exported["export"], "model_card.json")).read())
    card["source"] = {**(card.get("source") or {}), "data": "coco:/data/my_set"}
    (model_dir / "model_card.json").write_text(json.dumps(card))
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for name in ("gray.png", "cmyk.jpg"):
        shutil.copy(folder / name, pictures)
    model = str(model_dir / "model_int8.tflite")
    assert main([model, str(pictures), "--out", str(tmp_path / "o1")]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main([model, str(pictures), "--samples", "1", "--out", str(tmp_path / "o2")]) == 0
    assert "note: the model was trained on coco:/data/my_set; --samples draws built-in shapes scenes" in capsys.readouterr().err
