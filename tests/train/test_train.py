import numpy as np
import pytest

from edgecv.config import Optimizer, TrainConfig
from edgecv.train.fit import evaluate, train

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def test_training_learns_above_chance(tiny_trained, tiny_dataset):
    assert tiny_trained.test_accuracy > 0.8  # three classes: chance is 1/3
    assert len(tiny_trained.history["loss"]) == 3
    assert tiny_trained.history["loss"][-1] < tiny_trained.history["loss"][0]
    assert evaluate(tiny_trained.model, tiny_dataset.x_test, tiny_dataset.y_test) == tiny_trained.test_accuracy


def test_same_seed_same_weights_and_progress_is_reported(tiny_dataset):
    small = tiny_dataset.subset(64, 16)
    events = []
    config = TrainConfig(epochs=1, batch_size=32, optimizer=Optimizer.SGD, seed=7)
    a = train(small, config, events.append)
    b = train(small, config)
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
    assert events and events[-1].done == events[-1].total == 2 and events[-1].task == "train"


def test_validation_split_holds_out_train_images(tiny_dataset):
    result = train(tiny_dataset.subset(64, 16), TrainConfig(epochs=1, batch_size=32, val_split=0.25))
    assert "val_accuracy" in result.history
