"""Broken and hostile inputs: every reader answers with a DataError (one line, exit 2), never a traceback,
and never runs code it finds in a file. Property-based where the input space is large."""

import json
import os
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecv import runtime as rt
from edgecv.measure.benchmark import benchmark_file
from edgecv.config import BenchConfig
from edgecv.data.datasets import _unpickle
from edgecv.errors import DataError
from edgecv.compress.export import load_keras, save_keras
from edgecv.measure.gate import Baseline
from edgecv.measure.report import Report

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
report_like = st.fixed_dictionaries({"stages": st.lists(
    st.dictionaries(st.sampled_from(["stage", "accuracy", "latency", "model", "details", "status"]), json_values),
    max_size=3)})


def _one_answer(reader, source, kind, *args):
    """A reader either returns what it reads or raises one DataError whose message is one line; anything else
    (another exception type, a traceback) fails the test. Returns which of the two happened."""
    try:
        result = reader(source, *args)
    except DataError as e:
        assert str(e) and "\n" not in str(e)
        return "refused"
    assert isinstance(result, kind)
    return "read"


@FUZZ
@given(value=json_values | report_like)
def test_report_reader_takes_any_json(tmp_path, value):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(value))
    assert _one_answer(Report.load, path, Report) in ("read", "refused")


@FUZZ
@given(value=json_values | st.fixed_dictionaries({"schema": st.just("edgecv.baseline/1"), "accuracy": json_values,
                                                  "data": json_values}))
def test_baseline_reader_takes_any_json(tmp_path, value):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(value))
    assert _one_answer(Baseline.load, path, Baseline) in ("read", "refused")


@FUZZ
@given(data=st.binary(max_size=200))
def test_result_readers_take_any_bytes(tmp_path, data):
    path = tmp_path / "x.json"
    path.write_bytes(data)
    for reader, kind in ((Report.load, Report), (Baseline.load, Baseline)):
        assert _one_answer(reader, path, kind) in ("read", "refused")


@FUZZ
@given(data=st.binary(max_size=300))
def test_cifar_unpickler_takes_any_bytes(data):
    assert _one_answer(_unpickle, data, dict, "fuzz") in ("read", "refused")


@FUZZ
@given(data=st.binary(max_size=300))
def test_sample_reader_takes_any_bytes(tmp_path, data):
    path = tmp_path / "s.npz"
    path.write_bytes(data)
    with pytest.raises((ValueError, OSError)):
        rt.load_samples(path)


def test_pickles_that_would_run_code_are_refused(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for payload in (Exploit(), {b"data": Exploit()}, [Exploit()]):
        with pytest.raises(DataError, match="refused posix.system|refused nt.system|refused os.system"):
            _unpickle(pickle.dumps(payload, protocol=2), "evil")
    assert not marker.exists()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_model_files_are_one_line(tiny_tflite, tiny_trained, tiny_dataset, tmp_path, fraction):
    keras_file = save_keras(tiny_trained.model, tmp_path / "m.keras")
    h5_file = save_keras(tiny_trained.model, tmp_path / "m.h5")
    for source in (tiny_tflite["int8"], keras_file, h5_file):
        data = source.read_bytes()
        cut = tmp_path / f"cut{source.suffix}"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(DataError):
            benchmark_file(cut, tiny_dataset, BenchConfig(warmup=1, runs=2))


def test_a_model_carrying_code_is_refused_unless_trusted(tmp_path):
    from edgecv._tf import keras

    L = keras().layers
    inputs = keras().Input((4,))
    model = keras().Model(inputs, L.Dense(2)(L.Lambda(lambda t: t * 2)(inputs)))
    for suffix in (".h5", ".keras"):
        path = save_keras(model, tmp_path / f"lambda{suffix}")
        with pytest.raises(DataError, match="carries code"):
            load_keras(path)
        assert load_keras(path, trust=True).count_params() == model.count_params()
