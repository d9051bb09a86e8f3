import numpy as np
import pytest

from edgecv.compress.flip import flip_averaged
from edgecv.compress.quantize import calibration_images, convert
from edgecv.runtime import TFLiteModel, find_runtime

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def _scores(content, images):
    return TFLiteModel(content=content, runtime=find_runtime()).scores(images)


def test_flip_average_is_the_mean_over_an_image_and_its_mirror(tiny_trained, tiny_dataset):
    model, x = tiny_trained.model, tiny_dataset.x_test[:8].astype(np.float32)
    averaged = flip_averaged(model)
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(averaged.predict(x, verbose=0), expected, atol=1e-5)
    # a mirror-symmetric classifier: an image and its mirror get the same scores, which the plain model does not
    np.testing.assert_allclose(averaged.predict(x[:, :, ::-1], verbose=0), averaged.predict(x, verbose=0), atol=1e-5)
    assert not np.allclose(model.predict(x[:, :, ::-1], verbose=0), model.predict(x, verbose=0), atol=1e-3)
    assert averaged.count_params() == model.count_params()  # shared weights, one copy


def test_flip_averaged_int8_file_runs_both_inferences_with_one_copy_of_the_weights(tiny_trained, tiny_dataset):
    calibration = calibration_images(tiny_dataset, 50)
    plain = convert(tiny_trained.model, "int8", calibration)
    averaged = convert(flip_averaged(tiny_trained.model), "int8", calibration)
    ops = [op["op_name"] for op in TFLiteModel(content=averaged, runtime=find_runtime())
           .interpreter._get_ops_details()]
    assert "REVERSE_V2" in ops and ops.count("CONV_2D") == 4  # seed-cnn's two convolutions, twice
    assert len(averaged) < 1.2 * len(plain)
    x = tiny_dataset.x_test[:16].astype(np.float32)
    # scores, not top-1: the synthetic classes are places, and left and right swap under a mirror, so the
    # averaged model has exact ties between them that int8 rounding may break either way
    scores = _scores(averaged, x)
    np.testing.assert_allclose(_scores(averaged, x[:, :, ::-1]), scores, atol=0.02)
    np.testing.assert_allclose(scores, flip_averaged(tiny_trained.model).predict(x, verbose=0), atol=0.02)
