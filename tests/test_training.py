"""A short fit really trains every head of the shared model."""

import keras
import pytest

import mtl_keras as mk

NAMES = ["shape", "color", "present", "box", "count"]


@pytest.mark.slow
def test_short_fit_lowers_every_task_loss():
    keras.utils.set_random_seed(0)
    tasks = mk.data.tasks_for("shapes", names=NAMES)
    data = mk.data.load("shapes", split="val", image_size=64, batch_size=16, size=64, tasks=tasks)
    # A low BatchNorm momentum lets inference statistics catch up within a few dozen steps.
    model = mk.build_model(tasks, trunk="mobilenet_v3_small", image_size=64, bn_momentum=0.5)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss_weights={"box": 2.0})
    before = model.evaluate(data, verbose=0, return_dict=True)
    history = model.fit(data, epochs=12, verbose=0)
    after = model.evaluate(data, verbose=0, return_dict=True)
    for name in NAMES:
        assert after[f"{name}_loss"] < 0.8 * before[f"{name}_loss"], (name, before, after)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after["color_accuracy"] > before["color_accuracy"]
