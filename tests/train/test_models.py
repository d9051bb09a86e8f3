import pytest

from edgecv.config import Arch
from edgecv.errors import ConfigError
from edgecv.train.models import build

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


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


def test_patchnet_has_one_layer_at_full_resolution_and_fits_100k_parameters():
    model = build("patchnet", (32, 32, 3), 10)
    assert model.count_params() <= 100_000
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    stem, rest = convs[0], convs[1:]
    assert (stem.kernel_size, stem.strides, stem.output_shape[1:3]) == ((2, 2), (2, 2), (16, 16))
    assert all(max(layer.output_shape[1:3]) <= 16 for layer in rest)  # nothing else runs at 32x32
    assert sum(layer.output_shape[1] == 8 for layer in rest) >= 2  # work moves down to 8x8
    assert type(model.get_layer("pool")).__name__ == "GlobalAveragePooling2D"


def test_patchnet_late_pool_moves_a_convolution_up_a_resolution_at_no_parameter_cost():
    def conv_sizes(model):
        return [layer.output_shape[1] for layer in model.layers if type(layer).__name__ == "Conv2D"]

    plain, late = build("patchnet", (32, 32, 3), 10), build("patchnet", (32, 32, 3), 10, late_pool=1)
    assert conv_sizes(plain) == [16, 16, 8, 8, 4]
    assert conv_sizes(late) == [16, 16, 16, 8, 4]
    assert late.count_params() == plain.count_params()
    assert conv_sizes(build("patchnet", (32, 32, 3), 10, late_pool=2)) == [16, 16, 16, 8, 8]


def test_patchnet_separable_splits_only_the_last_blocks_convolutions():
    def kinds(model):
        return [(type(layer).__name__, layer.output_shape[1]) for layer in model.layers
                if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D")]

    model = build("patchnet", (32, 32, 3), 10, widths=(16, 32, 256), separable=1)
    assert kinds(model) == [("Conv2D", 16), ("Conv2D", 16), ("Conv2D", 8),  # stem and block 1 untouched
                            ("DepthwiseConv2D", 8), ("Conv2D", 8), ("DepthwiseConv2D", 4), ("Conv2D", 4)]
    assert [layer.kernel_size for layer in model.layers if layer.name in ("b2_conv1", "b2_conv2")] == [(1, 1)] * 2
    assert model.count_params() <= 100_000  # 256 channels where a full 3x3 block 2 fits 80
    both = build("patchnet", (32, 32, 3), 10, widths=(16, 32, 64), separable=2)
    assert [name for name, _ in kinds(both)].count("DepthwiseConv2D") == 4


def test_patchnet_widths_set_its_stem_and_blocks():
    model = build("patchnet", (32, 32, 3), 10, widths=(32, 48, 62))
    assert [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"] == [32, 48, 48, 62, 62]
    assert model.count_params() <= 100_000


def test_patchnet_refuses_images_too_small_for_its_pools():
    assert build("patchnet", (8, 8, 3), 4).output_shape == (None, 4)
    with pytest.raises(ConfigError, match="at least 8 pixels"):
        build("patchnet", (6, 6, 3), 4)


def test_patchnet_int8_runs_whole_in_xnnpack(tmp_path):
    """Global pooling converts to MEAN, which XNNPACK runs in int8, where ResNet-8's AVERAGE_POOL_2D stays on
    TFLite's own kernels; only the final SOFTMAX is left outside the delegate."""
    import numpy as np

    from edgecv import runtime as rt
    from edgecv.compress.quantize import convert
    from edgecv.config import QuantMode
    from edgecv.measure.benchmark import find_runtime, open_tflite

    calibration = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    coverage = {}
    for arch in ("patchnet", "resnet8"):
        path = tmp_path / f"{arch}.tflite"
        path.write_bytes(convert(build(arch, (32, 32, 3), 10), QuantMode.INT8, calibration))
        model = open_tflite(path, runtime=find_runtime())
        coverage[arch] = rt.delegation(model.interpreter, model.delegate)
    patchnet, resnet8 = coverage["patchnet"], coverage["resnet8"]
    assert patchnet["delegated_by_op"].get("MEAN") == 1 and "AVERAGE_POOL_2D" not in str(patchnet)
    assert set(patchnet["fallback_ops"]) <= {"SOFTMAX"}
    assert "AVERAGE_POOL_2D" in resnet8["fallback_ops"]  # the contrast the layout was chosen for
