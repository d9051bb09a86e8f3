import numpy as np
import pytest

from edgecv.compress.flip import MATRIX_SHARE, Mirror, flip_averaged, matrix_macs, mirror_for
from edgecv.compress.quantize import calibration_images, convert
from edgecv.device.edgetpu import static_report
from edgecv.measure.macs import total_macs
from edgecv.runtime import TFLiteModel, delegation, find_runtime

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def _scores(content, images):
    return TFLiteModel(content=content, runtime=find_runtime()).scores(images)


@pytest.mark.parametrize("mirror", [Mirror.MATRIX, Mirror.REVERSE])
def test_flip_average_is_the_mean_over_an_image_and_its_mirror(tiny_trained, tiny_dataset, mirror):
    model, x = tiny_trained.model, tiny_dataset.x_test[:8].astype(np.float32)
    averaged = flip_averaged(model, mirror)
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(averaged.predict(x, verbose=0), expected, atol=1e-5)
    # a mirror-symmetric classifier: an image and its mirror get the same scores, which the plain model does not
    np.testing.assert_allclose(averaged.predict(x[:, :, ::-1], verbose=0), averaged.predict(x, verbose=0), atol=1e-5)
    assert not np.allclose(model.predict(x[:, :, ::-1], verbose=0), model.predict(x, verbose=0), atol=1e-3)
    # shared weights, one copy; the matrix mirror adds only its fixed permutation, which does not train
    width = model.input_shape[2]
    assert averaged.count_params() == model.count_params() + (width * width if mirror is Mirror.MATRIX else 0)
    assert len(averaged.trainable_weights) == len(model.trainable_weights)


def test_auto_takes_the_matrix_only_when_it_is_a_small_share_of_the_work(tiny_trained):
    from edgecv._tf import keras

    model = tiny_trained.model
    share = matrix_macs(model.input_shape) / total_macs(model)
    assert mirror_for(model) is (Mirror.MATRIX if share <= MATRIX_SHARE else Mirror.REVERSE)
    k = keras()
    # one cheap layer over a wide image: the matrix would be most of the work
    wide_in = k.Input((16, 224, 3))
    wide = k.Model(wide_in, k.layers.Dense(2)(k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 1)(wide_in))))
    assert matrix_macs(wide.input_shape) > MATRIX_SHARE * total_macs(wide)
    assert mirror_for(wide) is Mirror.REVERSE and mirror_for(wide, "matrix") is Mirror.MATRIX
    assert mirror_for(wide, edgetpu=True) is Mirror.MATRIX  # REVERSE_V2 would leave the Edge TPU at the first op
    # many convolutions over a narrow one: the matrix is a rounding error
    narrow_in = k.Input((16, 16, 3))
    x = narrow_in
    for _ in range(3):
        x = k.layers.Conv2D(32, 3, padding="same")(x)
    narrow = k.Model(narrow_in, k.layers.Dense(2)(k.layers.GlobalAveragePooling2D()(x)))
    assert mirror_for(narrow) is Mirror.MATRIX
    any_in = k.Input((None, None, 3))
    any_size = k.Model(any_in, k.layers.GlobalAveragePooling2D()(any_in))
    assert mirror_for(any_size) is Mirror.REVERSE and mirror_for(any_size, edgetpu=True) is Mirror.REVERSE
    with pytest.raises(ValueError, match="fixed image width"):
        mirror_for(any_size, Mirror.MATRIX)


@pytest.mark.parametrize("mirror", [Mirror.MATRIX, Mirror.REVERSE])
def test_flip_averaged_int8_file_runs_both_inferences_with_one_copy_of_the_weights(tiny_trained, tiny_dataset,
                                                                                    mirror, tmp_path):
    calibration = calibration_images(tiny_dataset, 50)
    plain = convert(tiny_trained.model, "int8", calibration)
    averaged = convert(flip_averaged(tiny_trained.model, mirror), "int8", calibration)
    file = TFLiteModel(content=averaged, runtime=find_runtime())
    ops = [op["op_name"] for op in file.interpreter._get_ops_details()]
    assert ops.count("CONV_2D") == 4  # seed-cnn's two convolutions, twice
    assert len(averaged) < 1.2 * len(plain)
    placed = delegation(file.interpreter)
    (tmp_path / "m.tflite").write_bytes(averaged)
    (tmp_path / "plain.tflite").write_bytes(plain)
    assert static_report(tmp_path / "plain.tflite").fully_mapped
    edgetpu = static_report(tmp_path / "m.tflite")
    if mirror is Mirror.REVERSE:
        assert placed["fallback_ops"].get("REVERSE_V2") == 1
        assert not edgetpu.fully_mapped  # the first op leaves the Edge TPU, and every op after it
        assert edgetpu.cpu_ops == len([op for op in ops if op != "DELEGATE"])
    else:  # the mirror runs in XNNPACK (only the softmaxes stay on TFLite's own kernels) and on an Edge TPU
        assert "REVERSE_V2" not in ops and ops.count("TRANSPOSE") == 2
        assert placed["delegated_by_op"]["TRANSPOSE"] == 2 and set(placed["fallback_ops"]) <= {"SOFTMAX"}
        assert edgetpu.fully_mapped
    x = tiny_dataset.x_test[:16].astype(np.float32)
    # scores, not top-1: the synthetic classes are places, and left and right swap under a mirror, so the
    # averaged model has exact ties between them that int8 rounding may break either way
    scores = _scores(averaged, x)
    np.testing.assert_allclose(_scores(averaged, x[:, :, ::-1]), scores, atol=0.02)
    np.testing.assert_allclose(scores, flip_averaged(tiny_trained.model, mirror).predict(x, verbose=0), atol=0.02)


def test_the_matrix_mirror_is_exact_in_int8(tiny_trained, tiny_dataset):
    """Both mirrors give the same int8 file scores: the permutation's one weight per channel quantizes to 1."""
    calibration = calibration_images(tiny_dataset, 50)
    x = tiny_dataset.x_test[:16].astype(np.float32)
    matrix, reverse = (_scores(convert(flip_averaged(tiny_trained.model, m), "int8", calibration), x)
                       for m in (Mirror.MATRIX, Mirror.REVERSE))
    np.testing.assert_allclose(matrix, reverse, atol=1.5 / 256)
