import numpy as np
import pytest

from edgecv.compress.quantize import ConversionError, calibration_images, convert
from edgecv.runtime import TFLiteModel, find_runtime, measure_accuracy

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing


def _interp(content):
    return TFLiteModel(content=content, runtime=find_runtime())


@pytest.mark.parametrize("io_type, dtype", [("int8", np.int8), ("uint8", np.uint8), ("float32", np.float32)])
def test_int8_model_has_integer_kernels_and_the_asked_io(tiny_trained, tiny_dataset, io_type, dtype):
    content = convert(tiny_trained.model, "int8", calibration_images(tiny_dataset, 50), io_type)
    model = _interp(content)
    assert model.input["dtype"] == dtype and model.output["dtype"] == dtype
    ops = {op["op_name"] for op in model.interpreter._get_ops_details()}
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    params = model.interpreter._get_ops_details()
    kernels = [op["inputs"][1] for op in params if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(kernels) == 4
    for index in kernels:
        assert model.interpreter.get_tensor(int(index)).dtype == np.int8
    if io_type != "float32":
        assert model.input["quantization"][0] > 0  # read from the model by every consumer, never assumed


def test_modes_shrink_the_file_as_promised(tiny_trained, tiny_dataset):
    calibration = calibration_images(tiny_dataset, 50)
    sizes = {m: len(convert(tiny_trained.model, m, calibration)) for m in ("float32", "float16", "dynamic", "int8")}
    assert sizes["float16"] < 0.6 * sizes["float32"]
    assert sizes["dynamic"] < 0.35 * sizes["float32"]
    assert sizes["int8"] < 0.35 * sizes["float32"]


def test_int8_keeps_accuracy_of_the_float_parent(tiny_trained, tiny_dataset):
    content = convert(tiny_trained.model, "int8", calibration_images(tiny_dataset, 50))
    model = _interp(content)
    accuracy, _ = measure_accuracy(model, model.prepare(tiny_dataset.x_test), tiny_dataset.y_test)
    assert abs(accuracy - tiny_trained.test_accuracy) <= 0.05


def test_int8_without_calibration_is_refused(tiny_trained):
    with pytest.raises(ConversionError, match="calibration"):
        convert(tiny_trained.model, "int8", None)


def test_calibration_comes_from_the_train_split(tiny_dataset):
    images = calibration_images(tiny_dataset, 20, seed=3)
    assert images.dtype == np.float32 and len(images) == 20
    train_rows = {x.tobytes() for x in tiny_dataset.x_train}
    assert all(x.astype(np.uint8).tobytes() in train_rows for x in images)


def test_int16x8_has_int16_activations_and_int8_weights(tiny_trained, tiny_dataset):
    model = TFLiteModel(content=convert(tiny_trained.model, "int16x8", calibration_images(tiny_dataset, 30)),
                        plain=True)
    it = model.interpreter
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    conv = next(op for op in it._get_ops_details() if op["op_name"] == "CONV_2D")
    assert tensors[int(conv["inputs"][0])]["dtype"] == np.int16
    assert tensors[int(conv["inputs"][1])]["dtype"] == np.int8
    accuracy, _ = measure_accuracy(model, model.prepare(tiny_dataset.x_test), tiny_dataset.y_test)
    assert abs(accuracy - tiny_trained.test_accuracy) <= 0.05


def test_sparse_storage_keeps_only_the_nonzeros(tiny_trained, tiny_dataset):
    from edgecv.config import PruneConfig
    from edgecv.compress.prune import prune
    from edgecv.runtime import weight_stats

    pruned = prune(tiny_trained.model, tiny_dataset, PruneConfig(sparsity=0.8, epochs=2, batch_size=32))
    cal = calibration_images(tiny_dataset, 30)
    dense, sparse = convert(pruned.model, "int8", cal), convert(pruned.model, "int8", cal, sparse=True)
    assert len(sparse) < 0.8 * len(dense)
    model = TFLiteModel(content=sparse, plain=True)  # XNNPACK refuses sparse int8; TFLite's kernels run it
    assert any(d["sparsity_parameters"] for d in model.interpreter.get_tensor_details())
    params, sparsity = weight_stats(model.interpreter)
    assert params == tiny_trained.model.count_params() and sparsity == pytest.approx(0.8, abs=0.03)
