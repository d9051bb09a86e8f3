"""A gate's verdict as records: each criterion with its limit, and ``compress --max-drop``'s per stage.

They are what ``report.json`` and JUnit XML store, so they sit apart from the gate that judges: a report can
read a verdict back without importing the gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Criterion:
    name: str
    measured: float | None  # None: the candidate could not be measured
    op: str  # "<=" or ">="
    limit: float
    unit: str
    p_value: float | None = None  # McNemar's exact test of this drop, when both sides kept per-image predictions
    alpha: float | None = None  # set by significant_only: over the limit fails only when p_value < alpha

    @property
    def within(self) -> bool:
        """Whether the measured value keeps the limit, significance aside."""
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.op == "<=" else self.measured >= self.limit

    @property
    def passed(self) -> bool:
        if self.within:
            return True
        # significant_only: a drop the test cannot tell from the luck of the test images is let through;
        # without a p-value there is no such evidence, so the limit alone decides
        return self.measured is not None and self.alpha is not None and self.p_value is not None \
            and self.p_value >= self.alpha

    @property
    def excess(self) -> float | None:
        """By how much the limit is missed (positive) or kept (negative or zero), in ``excess_unit``."""
        if self.measured is None:
            return None
        return self.measured - self.limit if self.op == "<=" else self.limit - self.measured

    @property
    def excess_unit(self) -> str:
        """The unit of ``excess``: the gap between two percentages is in points (48 % misses a 90 % floor
        by 42 points, not by 42 %); any other gap has the criterion's unit."""
        return "points" if self.unit == "%" else self.unit

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "excess": self.excess, "excess_unit": self.excess_unit}

    @classmethod
    def from_dict(cls, d: dict) -> Criterion:
        """Reads a criterion written by ``to_dict`` (``passed`` and ``excess`` are recomputed, not trusted).

        Raises:
            ValueError: a record that is not one.
        """
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or d.get("op") not in ("<=", ">=") \
                or not isinstance(d.get("unit"), str) or not is_number(d.get("limit")) \
                or not (d.get("measured") is None or is_number(d.get("measured"))):
            raise ValueError("a gate criterion needs a name, an op (<= or >=), a numeric limit and a unit")
        extra = {k: d[k] for k in ("p_value", "alpha") if is_number(d.get(k))}
        return cls(d["name"], d["measured"], d["op"], d["limit"], d["unit"], **extra)


@dataclass
class StageCriterion:
    """One criterion of one stage of a ``compress`` run."""

    stage: str
    criterion: Criterion

    @property
    def passed(self) -> bool:
        return self.criterion.passed

    def to_dict(self) -> dict:
        """The shape ``report.json`` has always had: the stage, then the criterion's fields."""
        c = self.criterion
        return {"stage": self.stage, "name": c.name, "measured": c.measured, "op": c.op, "limit": c.limit,
                "unit": c.unit, "passed": c.passed, "excess": c.excess}


@dataclass
class GateReport:
    """``compress --max-drop``: every quantized stage against the run's own float model."""

    max_drop: float
    reference: str  # the stage gated against
    criteria: list[StageCriterion]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def failed(self) -> list[str]:
        """The stages that missed a limit, in order."""
        return [c.stage for c in self.criteria if not c.passed]

    def to_dict(self) -> dict:
        return {"max_drop": self.max_drop, "reference": self.reference, "passed": self.passed,
                "criteria": [c.to_dict() for c in self.criteria]}

    @classmethod
    def from_dict(cls, d: dict) -> GateReport:
        """Reads ``to_dict``'s shape back (a report.json's ``gate``).

        Raises:
            ValueError: a record that is not one.
        """
        if not isinstance(d, dict) or not is_number(d.get("max_drop")) or not isinstance(d.get("reference"), str) \
                or not isinstance(d.get("criteria"), list) \
                or not all(isinstance(c, dict) and isinstance(c.get("stage"), str) for c in d["criteria"]):
            raise ValueError("a gate record needs max_drop, reference and criteria, each criterion with its stage")
        return cls(d["max_drop"], d["reference"], [StageCriterion(c["stage"], Criterion.from_dict(c))
                                                   for c in d["criteria"]])
