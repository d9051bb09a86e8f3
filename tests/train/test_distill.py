import numpy as np
import pytest

from edgecv.config import Optimizer, TrainConfig
from edgecv.errors import ConfigError
from edgecv.train.distill import mix, soft_targets
from edgecv.train.fit import top1, train

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def _permuted(model, order):
    """The model with its classes relabelled: output j is the model's class order[j] (still probabilities)."""
    from edgecv._tf import keras

    k = keras()
    relabel = k.layers.Dense(len(order), use_bias=False, trainable=False, name="relabel")
    teacher = k.Model(model.input, relabel(model.output))
    relabel.set_weights([np.eye(len(order), dtype=np.float32)[:, order]])
    return teacher


def test_soft_targets_are_the_mean_over_an_image_and_its_mirror(tiny_trained, tiny_dataset):
    model, x = tiny_trained.model, tiny_dataset.x_train[:40]
    soft = soft_targets(model, x, mirror=True, batch_size=16)  # chunks that do not divide 40 as well
    expected = (model.predict(x.astype(np.float32), verbose=0) + model.predict(x[:, :, ::-1].astype(np.float32),
                                                                             verbose=0)) / 2
    np.testing.assert_allclose(soft, expected, atol=1e-5)
    np.testing.assert_allclose(soft_targets(model, x[:, :, ::-1]), soft, atol=1e-5)
    np.testing.assert_allclose(soft_targets(model, x, mirror=False), model.predict(x.astype(np.float32), verbose=0),
                               atol=1e-5)  # classes a mirror changes (here: left and right) keep their own


def test_temperature_spreads_the_mass_and_keeps_the_order(tiny_trained, tiny_dataset):
    x = tiny_dataset.x_train[:40]
    sharp, soft = soft_targets(tiny_trained.model, x), soft_targets(tiny_trained.model, x, temperature=4.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(np.argmax(soft, axis=1), np.argmax(sharp, axis=1))
    assert soft.max(axis=1).mean() < sharp.max(axis=1).mean()


def test_a_teacher_that_ends_in_logits_is_refused(tiny_dataset):
    from edgecv._tf import keras

    k = keras()
    logits = k.Sequential([k.Input(shape=tiny_dataset.input_shape), k.layers.Flatten(), k.layers.Dense(3)])
    with pytest.raises(ConfigError, match="end it in a softmax"):
        soft_targets(logits, tiny_dataset.x_train[:8])


def test_mix_weighs_teacher_against_labels():
    one_hot, soft = np.eye(3, dtype=np.float32), np.full((3, 3), 1 / 3, dtype=np.float32)
    np.testing.assert_allclose(mix(one_hot, soft, 0.0), one_hot)
    np.testing.assert_allclose(mix(one_hot, soft, 1.0), soft)
    np.testing.assert_allclose(mix(one_hot, soft, 0.25)[0], [0.75 + 0.25 / 3, 0.25 / 3, 0.25 / 3], atol=1e-6)
    with pytest.raises(ConfigError, match="teacher predicts 2 classes"):
        mix(one_hot, soft[:, :2], 0.5)


def test_a_student_of_a_relabelling_teacher_learns_the_teacher_not_the_labels(tiny_trained, tiny_dataset):
    order = [1, 2, 0]  # teacher says "right" where the labels say "left", and so on
    # no flips in this recipe, so the teacher scores each image alone (a mirror swaps left and right here)
    teacher = _permuted(tiny_trained.model, order)
    config = TrainConfig(epochs=6, batch_size=32, optimizer=Optimizer.ADAM, learning_rate=3e-3, distill=1.0)
    student = train(tiny_dataset, config, teacher=teacher).model
    said = top1(teacher, tiny_dataset.x_test)
    assert np.mean(top1(student, tiny_dataset.x_test) == said) >= 0.9
    assert np.mean(top1(student, tiny_dataset.x_test) == tiny_dataset.y_test) < 0.4


@pytest.mark.parametrize("distill,with_teacher", [(0.5, False), (0.0, True)])
def test_distillation_needs_both_a_teacher_and_a_weight(tiny_trained, tiny_dataset, distill, with_teacher):
    config = TrainConfig(epochs=1, batch_size=32, distill=distill)
    with pytest.raises(ConfigError, match="needs both a teacher and a weight"):
        train(tiny_dataset.subset(32, 8), config, teacher=tiny_trained.model if with_teacher else None)
