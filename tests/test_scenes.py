"""The built-in scenes' label contract (numpy only, no TensorFlow)."""

import numpy as np
import pytest

from demo import scenes


def _scenes(n=40, **kw):
    return [scenes.render_scene(seed=7, split="train", index=i, **kw) for i in range(n)]


@pytest.mark.parametrize("size", [32, 96])
def test_main_box_is_tight_around_main_object_pixels(size):
    for s in _scenes(image_size=size):
        lab = s.labels
        y1, x1, y2, x2 = (np.array(lab["box"]) * size).round().astype(int)
        assert 0 <= y1 < y2 <= size and 0 <= x1 < x2 <= size
        # The main object is drawn last, so all its pixels carry its class in the mask.
        main = np.argwhere(lab["mask"] == lab["shape"] + 1)
        inside = main[(main[:, 0] >= y1) & (main[:, 0] < y2) & (main[:, 1] >= x1) & (main[:, 1] < x2)]
        assert len(inside) > 0
        rows, cols = inside[:, 0], inside[:, 1]
        assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (y1, x1, y2, x2)


def test_mask_agrees_with_object_boxes():
    for s in _scenes():
        boxes, labels = s.labels["objects"]["boxes"], s.labels["objects"]["labels"]
        size = s.image.shape[0]
        for y, x in np.argwhere(s.labels["mask"] > 0):
            k = s.labels["mask"][y, x] - 1
            ok = [
                b for b, l in zip(boxes, labels)
                if l == k and b[0] * size <= y < b[2] * size and b[1] * size <= x < b[3] * size
            ]
            assert ok, f"mask pixel {(y, x)} of class {k} lies in no box of that class"


def test_objects_present_and_count_agree():
    for s in _scenes():
        labels = s.labels["objects"]["labels"]
        valid = labels[labels >= 0]
        assert s.labels["count"] == len(valid) >= 1
        assert set(np.flatnonzero(s.labels["present"])) == set(valid.tolist())
        assert np.all(s.labels["objects"]["boxes"][labels < 0] == -1)
        assert s.labels["shape"] in valid


def test_main_object_is_the_largest():
    for s in _scenes():
        b = s.labels["objects"]["boxes"][s.labels["objects"]["labels"] >= 0]
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        main = s.labels["box"]
        main_area = (main[2] - main[0]) * (main[3] - main[1])
        # Sizes are chosen by radius; the tight box of the largest shape is the largest up to shape form.
        assert main_area >= 0.5 * areas.max()


def test_deterministic_and_splits_disjoint():
    a = scenes.render_scene(seed=3, split="val", index=11, image_size=48)
    b = scenes.render_scene(seed=3, split="val", index=11, image_size=48)
    c = scenes.render_scene(seed=3, split="test", index=11, image_size=48)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels["mask"], b.labels["mask"])
    assert not np.array_equal(a.image, c.image)
    train = {scenes.render_scene(seed=0, split="train", index=i, image_size=32).image.tobytes() for i in range(50)}
    test = {scenes.render_scene(seed=0, split="test", index=i, image_size=32).image.tobytes() for i in range(50)}
    assert not train & test


def test_colour_label_matches_main_object_pixels():
    for s in _scenes(n=30):
        size = s.image.shape[0]
        y1, x1, y2, x2 = (np.array(s.labels["box"]) * size).round().astype(int)
        region = s.labels["mask"][y1:y2, x1:x2] == s.labels["shape"] + 1
        # Median: another object of the same class may overlap the box a little.
        pixels = np.median(s.image[y1:y2, x1:x2][region].astype(float), axis=0)
        nearest = min(scenes.COLORS, key=lambda c: np.linalg.norm(np.array(scenes._RGB[c]) - pixels))
        assert nearest == scenes.COLORS[s.labels["color"]]


def test_digits_source_uses_sprites_and_labels_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    s = scenes.render_scene(index=2, source="digits", sprites=(d.images, d.target), image_size=64)
    assert "digit" in s.labels and 0 <= s.labels["digit"] <= 9
    assert s.labels["present"].shape == (10,)
    assert s.labels["depth"].shape == (64, 64) and s.labels["depth"][s.labels["mask"] > 0].max() < 5.0
    with pytest.raises(ValueError, match="sprites"):
        scenes.render_scene(source="digits")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"source": "cars"}, "unknown scene source"), ({"split": "dev"}, "unknown split"),
     ({"image_size": 4}, "at least 16"), ({"max_objects": 0}, "at least 1")],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scenes.render_scene(**kwargs)


def test_scene_depth_is_a_slanted_floor_with_nearer_objects_drawn_later():
    checked = 0
    for i in range(40):
        s = scenes.render_scene(seed=5, split="train", index=i, image_size=48, max_objects=3)
        depth, seg = s.labels["depth"], s.labels["mask"]
        assert depth.dtype == np.float32 and depth.shape == (48, 48)
        assert np.isfinite(depth).all() and depth.min() >= 1.0 and depth.max() <= 10.0
        floor = seg == 0
        # The floor: one depth per row, 10 at the top edge to 5 at the bottom one, a straight slant.
        slant = np.broadcast_to((10.0 - 5.0 * (np.arange(48) + 0.5) / 48)[:, None], (48, 48))
        np.testing.assert_allclose(depth[floor], slant[floor], rtol=1e-6)
        # Objects stand in front of the whole floor.
        assert depth[~floor].max() < 5.0
        # One depth per object; in drawing order (boxes are stored in it) each is nearer than the last:
        # the pixels at the k-th largest depth lie in the k-th drawn object's box.
        boxes = s.labels["objects"]["boxes"][s.labels["objects"]["labels"] >= 0]
        levels = np.unique(depth[~floor])[::-1]
        if len(levels) != len(boxes):
            continue  # an object hidden under later ones shows no depth of its own
        for z, (y0, x0, y1, x1) in zip(levels, boxes * 48):
            ys, xs = np.nonzero(depth == z)
            assert ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1
        # The main object (the largest, drawn last) is the nearest thing in the picture.
        main = seg == s.labels["shape"] + 1
        assert depth[main].min() == depth.min()
        checked += len(boxes) > 1
    assert checked >= 10
