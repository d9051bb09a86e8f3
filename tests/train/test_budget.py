"""Budgeted training ends on time, at the end of its schedule, and refuses a budget that fits no epoch."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgecv.train.budget import BudgetTooSmall, schedule
from edgecv.config import Arch, Optimizer, Recipe, TrainConfig, recipe_config
from edgecv.errors import ConfigError


def test_schedule_follows_the_planned_total():
    from edgecv._tf import tf

    total = tf().Variable(1000, dtype=tf().int64)
    rate = schedule(0.1, total)
    assert float(rate(0)) < 0.01  # warm-up starts low
    assert float(rate(30)) == pytest.approx(0.1, rel=0.05)  # the peak after 3 % of the steps
    assert float(rate(515)) == pytest.approx(0.05, rel=0.05)  # half-way down the cosine
    assert float(rate(1000)) == pytest.approx(0.0, abs=1e-6)
    total.assign(2000)  # the plan moved: the same step is now earlier in the curve
    assert float(rate(1000)) > 0.04


@pytest.mark.parametrize("batch, planned, cut", [(9, 2, False), (4, 2, True), (9, 3, True)])
def test_a_late_last_step_is_the_plan_holding_and_anything_earlier_a_cut(batch, planned, cut):
    """The deadline passing at the planned last step is not a cut-off; inside an epoch, or before the last
    planned epoch, it is."""
    from edgecv._tf import keras, tf
    from edgecv.train.budget import BudgetPlan, plan_callback

    plan = BudgetPlan(budget_seconds=1.0, steps_per_epoch=10, epochs=planned)
    callback = plan_callback(plan, started=time.perf_counter() - 5.0, total_steps=tf().Variable(0))  # past due
    callback.set_model(keras().Sequential([keras().layers.Input((1,)), keras().layers.Dense(1)]))
    callback.on_train_begin()
    callback.on_epoch_begin(1)  # the second epoch: past the first, where a missed deadline means "too small"
    callback.on_train_batch_end(batch)
    assert callback.model.stop_training and plan.cut_off is cut


def _drive(monkeypatch, budget: float, seconds_of_epoch, steps: int = 10):
    """Runs the plan's callback as Keras would, on a clock that moves only by the epochs' given durations."""
    import types

    import edgecv.train.budget as budget_module
    from edgecv._tf import keras, tf
    from edgecv.train.budget import BudgetPlan, plan_callback

    clock = [0.0]
    monkeypatch.setattr(budget_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    plan = BudgetPlan(budget_seconds=budget, steps_per_epoch=steps, epochs=1)
    callback = plan_callback(plan, started=0.0, total_steps=tf().Variable(0, dtype=tf().int64))
    callback.set_model(keras().Sequential([keras().layers.Input((1,)), keras().layers.Dense(1)]))
    callback.on_train_begin()
    epoch = 0
    while not callback.model.stop_training:
        callback.on_epoch_begin(epoch)
        for batch in range(steps):
            callback.on_train_batch_begin(batch)
            clock[0] += seconds_of_epoch(epoch, plan) / steps
            callback.on_train_batch_end(batch)
            if callback.model.stop_training:
                break
        callback.on_epoch_end(epoch)  # Keras ends the epoch even when a callback stopped it inside
        epoch += 1
    return plan, epoch


@pytest.mark.parametrize("case", ["steady", "slowing 3 % an epoch", "a 0.4 s pause in the last epoch"])
def test_the_plan_ends_in_time_through_a_slowdown_and_a_pause(monkeypatch, case):
    """~1 s epochs in a 20 s budget: a pause is fixed seconds, so a slack of a quarter epoch alone would not absorb
    it (the slow tier's budget run was cut off by one)."""
    from edgecv.train.budget import RESERVE_SHARE

    deadline = 20.0 * (1 - RESERVE_SHARE)
    epoch_seconds = deadline / 18.26  # 17 epochs leave 1.26 of them: a quarter epoch's slack plans an 18th

    def seconds(epoch, plan):
        if case == "slowing 3 % an epoch":
            return epoch_seconds * 1.03 ** epoch
        last = epoch > 5 and epoch + 1 == plan.epochs  # the planned last epoch (the first plan starts at 1)
        return epoch_seconds + (0.4 if case.startswith("a 0.4 s pause") and last else 0.0)

    plan, ran = _drive(monkeypatch, 20.0, seconds)
    seen = f"plans {plan.plans}, epoch ends {[round(t, 2) for t in plan.epoch_ends]}"
    assert not plan.cut_off and ran == plan.epochs, seen
    assert plan.epoch_ends[-1] <= deadline, seen
    assert plan.epoch_ends[-1] >= deadline - 2.5, seen  # the time was used: at most ~two epochs left idle


@pytest.mark.slow  # 30 s of real training, and a clock that a busy CPU stretches
def test_a_budgeted_run_ends_on_time_at_the_end_of_its_schedule(tiny_dataset):
    from edgecv.data.datasets import Dataset
    from edgecv.train.fit import train

    d = tiny_dataset  # 32 copies per epoch: ~2 s epochs, long beside a scheduler's pause (1 s ones were not)
    tiny_dataset = Dataset(np.concatenate([d.x_train] * 32), np.concatenate([d.y_train] * 32), d.x_test, d.y_test,
                           d.classes, d.source, d.kind)

    budget = 30.0  # seconds
    config = TrainConfig(epochs=1, batch_size=32, optimizer=Optimizer.ADAM, learning_rate=3e-3,
                         budget_minutes=budget / 60)
    start = time.perf_counter()
    result = train(tiny_dataset, config, started=start, track_test=30)
    wall = time.perf_counter() - start
    plan = result.plan
    seen = f"wall {wall:.1f} s, last epoch ended at {plan.epoch_ends[-1]:.1f} s, plans {plan.plans[-3:]}"
    assert plan.epoch_ends[-1] <= budget, seen  # training ended within the budget
    assert wall <= budget + 10, seen  # plus the final evaluation (a few seconds on a busy machine)
    assert plan.epoch_ends[-1] >= budget * 0.6, seen  # it used the time it had, not a first epoch's worth
    assert len(result.history["loss"]) == plan.epochs > 3 and not plan.cut_off, seen  # ended at the planned end
    assert len(plan.test_accuracy) == plan.epochs
    assert plan.final_learning_rate < 0.05 * 3e-3  # the schedule ran down to ~0


def test_a_budget_too_small_for_one_epoch_says_the_smallest_that_works(tiny_dataset):
    from edgecv.train.fit import train

    big = tiny_dataset.subset()  # 240 images; an epoch of them takes well over 0.01 s
    config = TrainConfig(arch=Arch.RESNET8, epochs=1, batch_size=8, budget_minutes=0.0002)
    with pytest.raises(BudgetTooSmall, match=r"cannot finish one epoch here: the smallest that works is about "
                                             r"[0-9.]+ minutes"):
        train(big, config)


@pytest.mark.parametrize("value", [0, -1.0])
def test_budget_must_be_positive(value):
    with pytest.raises(ConfigError, match="budget must be a positive number of minutes"):
        TrainConfig(budget_minutes=value)


def test_budget_is_refused_across_machines():
    from edgecv.config import Strategy

    with pytest.raises(ConfigError, match="workers would plan apart"):
        TrainConfig(budget_minutes=5, strategy=Strategy.MULTI_WORKER)


@pytest.mark.slow  # a minute by design; by default the CLI test (test_cli_edge) trains on a budget
def test_one_minute_smoke_run_on_real_images(shared_cifar):
    """The issue's smoke run: a 1-minute budget on a 5,000-image slice of the real train split."""
    from edgecv.data.datasets import load
    from edgecv.train.fit import train

    dataset = load(str(shared_cifar)).subset(5000, 1000, 0)  # decoding 60,000 JPEGs once is not this test's
    start = time.perf_counter()
    config = recipe_config(Recipe.EDGE, arch=Arch.RESNET8, budget_minutes=1.0)
    result = train(dataset, config, started=start)
    wall = time.perf_counter() - start
    seen = f"wall {wall:.1f} s, last epoch ended at {result.plan.epoch_ends[-1]:.1f} s"
    assert result.plan.epoch_ends[-1] <= 60, seen  # training ended within its budget
    # then the final 1,000-image evaluation, which traces a graph of its own: seconds, more on a slow host
    assert wall <= 60 + 20, seen
    assert result.plan.epochs >= 1 and len(result.history["loss"]) == result.plan.epochs
    assert result.test_accuracy > 0.2  # chance is 0.1
    assert np.isfinite(result.history["loss"][-1])
