import pytest

from edgecv.config import Arch
from edgecv.errors import ConfigError
from edgecv.train.models import build


def test_seed_cnn_is_the_classic_recipe():
    model = build(Arch.SEED_CNN, (32, 32, 3), 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    conv1, conv2, fc1, out = (model.get_layer(n) for n in ("conv1", "conv2", "fc1", "classifier"))
    assert (conv1.filters, conv1.kernel_size, conv1.activation.__name__) == (32, (3, 3), "relu")
    assert (conv2.filters, conv2.kernel_size) == (64, (3, 3))
    assert (fc1.units, fc1.activation.__name__) == (128, "relu")
    assert (out.units, out.activation.__name__) == (10, "softmax")
    # 896 + 18,496 + 295,040 + 1,290: the classic model's count; the rescaling layer adds none
    assert model.count_params() == 315_722


def test_seed_cnn_follows_the_data_shape():
    model = build("seed-cnn", (20, 24, 1), 4)
    assert model.input_shape == (None, 20, 24, 1) and model.output_shape == (None, 4)


def test_seed_cnn_refuses_images_too_small_for_two_pools():
    with pytest.raises(ConfigError, match="14x14"):
        build("seed-cnn", (8, 8, 3), 10)


def test_resnet8_has_the_mlperf_tiny_layout():
    model = build("resnet8", (32, 32, 3), 10)
    assert model.count_params() == 78_666  # the MLPerf Tiny reference's own count
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 9 and kinds.count("Add") == 3 and kinds.count("BatchNormalization") == 7


def test_resnet8_weights_have_the_reference_shapes(shared_cifar):
    from pathlib import Path

    from edgecv.compress.export import load_keras

    reference = Path(shared_cifar).parents[1] / "models" / "mlperf-tiny-resnet8" / "pretrainedResnet.h5"
    if not reference.is_file():
        pytest.skip(f"the MLPerf Tiny reference is not at {reference}")
    ours = sorted(tuple(w.shape) for w in build("resnet8", (32, 32, 3), 10).weights)
    theirs = sorted(tuple(w.shape) for w in load_keras(reference).weights)
    assert ours == theirs
