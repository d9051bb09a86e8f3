"""The search's choice: the Pareto front, the cheapest within the drop, and what it says when nothing is."""

from __future__ import annotations

import json

import pytest

from edgecv.config import Objective, SearchConfig
from edgecv.errors import ConfigError
from edgecv.measure.report import StageResult
from edgecv.flows.search import Candidate, Eta, choose, verdict


def _candidate(name, accuracy, p50, size, parent=0.80):
    row = StageResult(name, accuracy=accuracy, latency={"p50_ms": p50}, size_bytes=size, images=1000)
    return Candidate(name, 0.0, 0.0, "int8", row, drop=100 * (parent - accuracy))


PARENT = StageResult("parent", accuracy=0.80, images=1000)


def test_choose_the_fastest_within_the_drop_and_mark_the_front():
    grid = [_candidate("a", 0.800, 0.30, 400), _candidate("b", 0.795, 0.20, 300), _candidate("c", 0.780, 0.10, 100),
            _candidate("d", 0.770, 0.25, 350)]  # d: slower and worse than b
    result = choose(grid, PARENT, Objective.LATENCY, max_drop=1.0)
    assert result.chosen.name == "b"  # c is faster but drops 2 points
    assert [c.name for c in grid if c.on_front] == ["a", "b", "c"]
    assert choose(grid, PARENT, Objective.LATENCY, max_drop=2.5).chosen.name == "c"
    assert choose(grid, PARENT, Objective.SIZE, max_drop=0.6).chosen.name == "b"
    assert choose(grid, PARENT, "size", max_drop=0.6).chosen.name == "b"  # a string objective means the same
    assert SearchConfig(out=".", objective="arm-cost").objective is Objective.ARM_COST
    assert "chosen: b" in verdict(result)


def test_an_impossible_constraint_says_the_best_found_and_the_miss():
    grid = [_candidate("a", 0.790, 0.30, 400), _candidate("b", 0.770, 0.20, 300)]
    result = choose(grid, PARENT, Objective.LATENCY, max_drop=0.25)
    assert result.chosen is None and result.most_accurate.name == "a"
    assert result.miss == pytest.approx(0.75)
    text = verdict(result)
    assert "the most accurate, a, drops 1.00 points and misses by 0.75" in text


def test_failed_candidates_keep_their_rows_but_are_never_chosen():
    failed = Candidate("f", 0.5, 0.0, "int8", StageResult("f", status="failed", reason="boom"))
    grid = [failed, _candidate("a", 0.80, 0.3, 400)]
    result = choose(grid, PARENT, Objective.LATENCY, max_drop=1)
    assert result.chosen.name == "a" and not failed.on_front


def test_eta_from_measured_work():
    eta = Eta()
    assert eta.left(1000, 2) == "estimating time left"
    eta.learn_training(10.0, 1000)
    eta.learn_bench(5.0)
    assert eta.left(6000, 3) == "about 1 min 15 s left"


def test_grid_values_are_checked():
    with pytest.raises(ConfigError, match="channel ratios"):
        SearchConfig(out=".", channel_ratios=(1.0,))
    with pytest.raises(ConfigError, match="at least one"):
        SearchConfig(out=".", sparsities=())


def test_search_end_to_end_reuses_parents(tmp_path, tiny_dataset, monkeypatch):
    """A 2 x 2 grid on tiny data: two cuts are made once each, all four candidates measured, files written."""
    import edgecv.compress.channels
    import edgecv.flows.search
    from edgecv.config import BenchConfig, Optimizer, PruneConfig, TrainConfig

    monkeypatch.setattr(edgecv.flows.search, "load", lambda data, on_progress: tiny_dataset)
    calls = []
    real = edgecv.compress.channels.prune_channels
    monkeypatch.setattr(edgecv.compress.channels, "prune_channels", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    events = []
    config = SearchConfig(out=tmp_path / "s", train=TrainConfig(epochs=3, batch_size=32, optimizer=Optimizer.ADAM,
                                                                learning_rate=3e-3),
                          channel_ratios=(0.0, 0.5), sparsities=(0.0, 0.5), max_drop=100.0, finetune_epochs=1,
                          prune=PruneConfig(epochs=1, batch_size=32), bench=BenchConfig(warmup=2, runs=10))
    result = edgecv.flows.search.search(config, events.append)
    assert calls == [0.5]  # the 0 ratio is the parent itself
    assert len(result.candidates) == 4 and all(c.result.status == "ok" for c in result.candidates)
    half = [c for c in result.candidates if c.channel_ratio == 0.5]
    whole = [c for c in result.candidates if c.channel_ratio == 0.0]
    assert all(h.macs < w.macs / 3 for h in half for w in whole)
    assert result.chosen is not None and (tmp_path / "s" / "best.tflite").is_file()
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["chosen"] == result.chosen.name and len(saved["candidates"]) == 4
    assert (tmp_path / "s" / "search.png").stat().st_size > 0
    notes = [e.message for e in events if e.task == "search"]
    assert any("left" in n and "estimating" not in n for n in notes)  # an estimate once work was measured


def test_a_parent_that_cannot_be_cut_fails_before_anything_is_measured(tmp_path, tiny_dataset, monkeypatch):
    import edgecv.flows.search
    from edgecv._tf import keras
    from edgecv.errors import DataError

    L = keras().layers
    inputs = keras().Input((16, 16, 3))
    a, b = L.Conv2D(4, 3, name="a")(inputs), L.Conv2D(4, 3, name="b")(inputs)
    model = keras().Model(inputs, L.Dense(3, activation="softmax")(L.Flatten()(L.Concatenate(name="cat")([a, b]))))
    model.save(tmp_path / "concat.keras")
    monkeypatch.setattr(edgecv.flows.search, "load", lambda data, on_progress: tiny_dataset)
    config = SearchConfig(out=tmp_path / "s", model=tmp_path / "concat.keras", channel_ratios=(0.0, 0.5))
    with pytest.raises(DataError, match="'cat' \\(Concatenate\\)"):
        edgecv.flows.search.search(config)
    assert not list((tmp_path / "s").glob("*.tflite"))  # nothing was converted or measured first
