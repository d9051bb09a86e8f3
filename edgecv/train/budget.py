"""Training to a wall-clock budget: the schedule is fitted to the time there is, so the run ends on time at the
end of its learning-rate curve instead of being cut off in the middle of it.

The first steps measure this machine's throughput and fix a first plan (how many epochs fit); every epoch
end measures again and moves the plan, so a machine that slows down (another job, heat) still finishes in
time. The learning rate is a function of the share of the plan done: a short linear warm-up, then cosine
decay that reaches zero at the planned last step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from edgecv._tf import keras, tf
from edgecv.errors import ConfigError

PROBE_STEPS = 20  # timed after the first few steps, which include tracing the graph
SKIP_STEPS = 3
WARMUP_SHARE = 0.03  # of the planned steps
RESERVE_SHARE = 0.02  # of the budget, kept for the final evaluation and saving
SLACK_EPOCHS = 0.25  # a planned epoch may run this much slower than the estimate and still end in time
SLACK_SECONDS = 0.5  # and at least this much: a pause (a scheduler, a collector) is seconds, not a share of an epoch


def slack_seconds(epoch_seconds: float) -> float:
    """The time a plan keeps free before the deadline, so that one slow epoch or a pause still ends in time."""
    return max(SLACK_EPOCHS * epoch_seconds, SLACK_SECONDS)


class BudgetTooSmall(ConfigError):
    """Not even one epoch fits."""


@dataclass
class BudgetPlan:
    budget_seconds: float
    steps_per_epoch: int
    epochs: int = 0  # the current plan
    plans: list[tuple[int, int]] = field(default_factory=list)  # (at epoch, planned epochs), as it moved
    epoch_ends: list[float] = field(default_factory=list)  # seconds since the clock started, per epoch
    test_accuracy: list[float] = field(default_factory=list)  # per epoch, when tracked
    cut_off: bool = False  # the deadline passed inside an epoch (a slowdown the plan could not foresee)
    final_learning_rate: float | None = None  # where the schedule ended: ~0 when the plan held


def schedule(peak: float, total_steps) -> object:
    """A Keras schedule reading ``total_steps`` (a tf.Variable the plan updates) at every step."""

    class _Fitted(keras().optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            t = tf()
            step = t.cast(step, t.float32)
            total = t.maximum(t.cast(total_steps, t.float32), 1.0)
            warmup = t.maximum(1.0, WARMUP_SHARE * total)
            progress = t.clip_by_value((step - warmup) / t.maximum(total - warmup, 1.0), 0.0, 1.0)
            decay = 0.5 * (1.0 + t.cos(math.pi * progress))
            return peak * t.where(step < warmup, (step + 1.0) / warmup, decay)

        def get_config(self):
            return {"peak": peak}

    return _Fitted()


def plan_callback(plan: BudgetPlan, started: float, total_steps, evaluate_epoch=None):
    """Keeps ``plan`` and ``total_steps`` fitted to the time left; stops training at the planned end.

    ``started``: ``time.perf_counter()`` when the budget's clock started (before the data was prepared).
    ``evaluate_epoch``: a function returning test accuracy, called at each epoch end (its time is counted)."""
    deadline = started + plan.budget_seconds * (1 - RESERVE_SHARE)
    steps = plan.steps_per_epoch

    class _Plan(keras().callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.epoch_start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 0 and batch == min(SKIP_STEPS, steps - 1):
                self.probe_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() > deadline:  # a safety net only: the plan should end at an epoch's end
                if self.epoch == 0:  # not one epoch fits: say what would, from the steps so far
                    self._too_small((time.perf_counter() - self.epoch_start) / (batch + 1) * steps)
                self.model.stop_training = True
                # the planned last step, a moment late, is the plan holding; anything earlier is a cut
                plan.cut_off = plan.cut_off or not (batch == steps - 1 and self.epoch + 1 >= plan.epochs)
            probe_end = min(SKIP_STEPS + PROBE_STEPS, steps - 1)
            if self.epoch == 0 and batch == probe_end:
                timed = max(1, batch - min(SKIP_STEPS, steps - 1) + 1)
                self.probe_epoch = (time.perf_counter() - self.probe_start) / timed * steps
                self._replan(0, self.probe_epoch, first=True)

        def on_epoch_end(self, epoch, logs=None):
            evaluated = time.perf_counter()
            if evaluate_epoch is not None:
                plan.test_accuracy.append(float(evaluate_epoch()))
            now = time.perf_counter()
            plan.epoch_ends.append(now - started)
            self.durations.append(now - self.epoch_start)
            # what the next epoch will most likely take: the median of the last few (the first traced the
            # graph, so it stands in only through the probe, plus its evaluation)
            recent = self.durations[1:][-3:]
            estimate = sorted(recent)[len(recent) // 2] if recent else self.probe_epoch + (now - evaluated)
            self._replan(epoch + 1, estimate)
            if epoch + 1 >= plan.epochs:
                self.model.stop_training = True

        def on_train_begin(self, logs=None):
            self.durations = []
            self.probe_epoch = 0.0

        def _too_small(self, epoch_seconds: float):
            """Setting up (data, model, tracing) plus one epoch, plus the reserve: the least that works."""
            need = ((self.epoch_start - started) + epoch_seconds + slack_seconds(epoch_seconds)) / (1 - RESERVE_SHARE)
            raise BudgetTooSmall(
                f"a budget of {plan.budget_seconds / 60:g} minutes cannot finish one epoch here: the smallest "
                f"that works is about {max(0.1, math.ceil(need / 6) / 10):g} minutes (one epoch takes "
                f"~{epoch_seconds:.1f} s)")

        def _replan(self, done: int, epoch_seconds: float, first: bool = False):
            left = deadline - time.perf_counter() - slack_seconds(epoch_seconds)
            if first:
                left += time.perf_counter() - self.epoch_start  # the first epoch is under way: count it whole
                epochs = int(left // epoch_seconds)
                if epochs < 1:
                    self._too_small(epoch_seconds)
            else:
                epochs = done + max(0, int(left // epoch_seconds))
            if epochs != plan.epochs:
                plan.epochs = max(epochs, done, 1)
                plan.plans.append((done, plan.epochs))
                total_steps.assign(plan.epochs * steps)

    return _Plan()
