"""``check`` on an IMX500 package, judged by the record of its conversion (``imx500.json`` or a report's
``imx500`` row): the record is written here as ``edgecv imx500`` writes it, from a result whose numbers the
test chose, so every verdict can be worked out by hand. tests/device/test_imx500.py runs the same check on
a record the real toolchain wrote."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import synthetic_images, write_image_folder
from edgecv.cli.app import app
from edgecv.config import BenchConfig
from edgecv.data.datasets import fingerprint, load
from edgecv.device.imx500 import CHIP_BYTES, Imx500Result, Tensor
from edgecv.errors import ConfigError, DataError
from edgecv.flows.checking import check_imx500, check_models
from edgecv.fsutil import json_text, sha256
from edgecv.measure.benchmark import scoring_images
from edgecv.measure.gate import GateConfig, update_baseline
from edgecv.measure.report import Report

pytestmark = pytest.mark.quick  # the contributor's tier (python -m pytest -m quick): cheap, one of each wing

CLASSES = ("left", "middle", "right")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    x, y = synthetic_images(30, seed=1)
    xt, yt = synthetic_images(40, seed=2)
    return load(write_image_folder(tmp_path_factory.mktemp("check") / "images", x, y, xt, yt, CLASSES))


def converted(folder, dataset, float_wrong=0, imx500_wrong=4, memory_kb=300.0, images=40):
    """``folder`` as ``edgecv imx500`` leaves it: a package, the float model it came from, and imx500.json whose
    float model misses ``float_wrong`` test images and whose IMX500 model misses ``imx500_wrong``, all of one class."""
    x, y = scoring_images(dataset, BenchConfig(limit=images))
    folder.mkdir(parents=True, exist_ok=True)
    model, package = folder / "tiny.keras", folder / "packerOut.zip"
    model.write_bytes(b"the float model")
    package.write_bytes(b"PK the package")

    def missing(n):
        wrong = np.flatnonzero(y == 0)[:n]
        return [int((c + 1) % 3) if i in wrong else int(c) for i, c in enumerate(y)]

    float_top1, imx500_top1 = missing(float_wrong), missing(imx500_wrong)
    result = Imx500Result(
        model=model.name, float_accuracy=float(np.mean(np.array(float_top1) == y)),
        imx500_accuracy=float(np.mean(np.array(imx500_top1) == y)), test_images=len(y), calibration_images=16,
        method="ptq", memory_bytes=int(memory_kb * 1024), available_bytes=CHIP_BYTES, runtime_bytes=150_000,
        model_bytes=100_000, fits=memory_kb * 1024 <= CHIP_BYTES, inputs=[Tensor("pixels", [16, 16, 3], 8, "unsigned", 1.0)],
        outputs=[Tensor("out", [3], 8, "unsigned", 1 / 256)], toolchain_seconds=20.0, convert_seconds=15.0,
        data={"source": dataset.source, "test_images": len(y), "test_fingerprint": fingerprint(x, y)},
        model_sha256=sha256(model.read_bytes()), package_sha256=sha256(package.read_bytes()),
        predictions={"float": float_top1, "imx500": imx500_top1}, files=[str(package)],
    )
    (folder / "imx500.json").write_text(json_text(result.to_dict()))
    return package, folder / "imx500.json", result


def by_name(result):
    return {c.name.split(" vs ")[0].split(" (")[0]: c for c in result.criteria}


def test_the_drop_against_its_own_float_model_and_the_fit_are_judged_image_by_image(dataset, tmp_path):
    package, record, made = converted(tmp_path / "run", dataset, float_wrong=0, imx500_wrong=4)
    result = check_imx500(package, record, GateConfig(max_drop=5.0, max_class_drop=20.0), dataset=dataset)
    got = by_name(result)
    assert got["accuracy drop"].measured == pytest.approx(100 * 4 / 40) and not got["accuracy drop"].passed
    assert "tiny.keras (float, same images)" in got["accuracy drop"].name
    assert got["IMX500 memory"].measured == pytest.approx(300.0) and got["IMX500 memory"].limit == CHIP_BYTES / 1024
    class0 = int(np.sum(scoring_images(dataset, BenchConfig(limit=40))[1] == 0))
    assert got["class drop"].measured == pytest.approx(100 * 4 / class0) and "left" in got["class drop"].name
    assert result.paired.changed == 4 and result.paired.images == 40
    assert not result.passed and result.candidate.accuracy == pytest.approx(made.imx500_accuracy)

    within = check_imx500(package, record, GateConfig(max_drop=10.0), dataset=dataset)
    assert within.passed and [c.name for c in within.criteria][-1] == "IMX500 memory"


def test_a_memory_ceiling_is_judged_alone_or_with_the_drop(dataset, tmp_path):
    package, record, _ = converted(tmp_path / "run", dataset, imx500_wrong=0, memory_kb=300.0)
    alone = check_imx500(package, record, GateConfig(max_drop=None, max_imx500_memory_kb=256.0))
    assert [c.name for c in alone.criteria] == ["IMX500 memory"] and not alone.passed
    assert alone.criteria[0].excess == pytest.approx(44.0)
    assert check_imx500(package, record, GateConfig(max_imx500_memory_kb=512.0)).passed
    over = converted(tmp_path / "big", dataset, imx500_wrong=0, memory_kb=9000.0)
    verdict = check_imx500(*over[:2], GateConfig())  # over the chip, whatever the drop
    assert [c.name for c in verdict.criteria if not c.passed] == ["IMX500 memory"]


def test_another_package_or_model_than_the_record_is_refused(dataset, tmp_path):
    package, record, _ = converted(tmp_path / "run", dataset)
    other = tmp_path / "other" / "packerOut.zip"
    other.parent.mkdir()
    other.write_bytes(package.read_bytes() + b"!")
    with pytest.raises(DataError, match="converted another packerOut.zip"):
        check_imx500(other, record)
    stranger = tmp_path / "stranger.keras"
    stranger.write_bytes(b"another float model")
    with pytest.raises(DataError, match="quantized another model than stranger.keras"):
        check_imx500(package, record, reference_model=stranger)
    assert check_imx500(package, record, GateConfig(max_drop=50), reference_model=tmp_path / "run" / "tiny.keras").passed


def test_limits_the_record_cannot_answer_are_refused(dataset, tmp_path):
    package, record, _ = converted(tmp_path / "run", dataset)
    with pytest.raises(ConfigError, match="--max-latency-ms.*no latency on this host"):
        check_imx500(package, record, GateConfig(max_latency_ms=5.0))
    with pytest.raises(ConfigError, match="--max-class-drop needs.*give the data set it was made from"):
        check_imx500(package, record, GateConfig(max_class_drop=5.0))
    other_data = load(write_image_folder(tmp_path / "other", *synthetic_images(30, seed=5),
                                         *synthetic_images(40, seed=6), CLASSES))
    with pytest.raises(ConfigError, match="not the one imx500.json was measured on"):
        check_imx500(package, record, GateConfig(max_class_drop=5.0), dataset=other_data)
    with pytest.raises(ConfigError, match="IMX500 package, which runs on the camera"):
        check_models(package, dataset)


def test_a_compress_report_row_is_found_by_the_package_hash(dataset, tmp_path):
    package, record, made = converted(tmp_path / "run" / "imx500", dataset, imx500_wrong=2)
    Report([made.row("imx500", tmp_path / "run")]).save(tmp_path / "run" / "report.json")
    best = tmp_path / "best_packerOut.zip"  # search copies the best package: same bytes, another name
    shutil.copyfile(package, best)
    result = check_imx500(best, tmp_path / "run" / "report.json", GateConfig(max_drop=1.0), dataset=dataset)
    assert by_name(result)["accuracy drop"].measured == pytest.approx(5.0) and not result.passed
    assert result.paired.changed == 2
    text = (tmp_path / "run" / "report.json").read_text()
    assert len(text.splitlines()) < 150  # 40 predictions per model, each list on one line


def test_a_baseline_on_the_same_images_is_the_reference(dataset, tmp_path, tiny_tflite):
    package, record, _ = converted(tmp_path / "run", dataset, imx500_wrong=2)
    baseline = update_baseline(tiny_tflite["float32"], dataset, tmp_path / "b.json", BenchConfig(runs=2, limit=40))
    result = check_imx500(package, record, GateConfig(max_drop=100.0), baseline=tmp_path / "b.json", dataset=dataset)
    drop = by_name(result)["accuracy drop"]
    assert drop.measured == pytest.approx(100 * baseline.accuracy - 100 * (38 / 40)) and "b.json" in drop.name
    assert result.paired is not None and result.paired.images == 40


def test_the_cli_judges_a_package_by_its_record(dataset, tmp_path):
    package, record, _ = converted(tmp_path / "run", dataset, imx500_wrong=4)
    runner = CliRunner()
    done = runner.invoke(app, ["check", str(package), "--measured-by", str(record), "--data", dataset.source,
                               "--max-drop", "5", "--json"])
    assert done.exit_code == 1, done.stderr
    verdict = json.loads(done.stdout)
    assert [c["name"] for c in verdict["criteria"] if not c["passed"]] == ["accuracy drop vs tiny.keras (float, same images)"]
    assert verdict["paired"]["changed"] == 4 and "predictions" not in verdict["candidate"]["details"]
    done = runner.invoke(app, ["check", str(package), "--measured-by", str(record), "--max-drop", "20",
                               "--max-imx500-memory-kb", "400"])
    assert done.exit_code == 0, done.stderr
    done = runner.invoke(app, ["check", str(package), "--data", dataset.source])
    assert done.exit_code == 2 and "--measured-by" in done.stderr and len(done.stderr.strip().splitlines()) == 1
