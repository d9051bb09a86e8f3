"""The gate's verdict as JUnit XML, the test-report format CI systems (GitLab, Jenkins, GitHub Actions
reporters, Azure Pipelines) already display: one test case per criterion, a failure for each one missed.

Built with ``xml.etree.ElementTree``, so model and class names with quotes, ampersands or angle brackets
stay well-formed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from edgecv.measure.gate import Criterion, GateReport, GateResult


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _measured(c: Criterion) -> str:
    return "not measured" if c.measured is None else f"{c.measured:.3f} {c.unit}"


def _failure_message(c: Criterion) -> str:
    """One line, as the gate table says it: what was measured, the limit, and by how much it was missed."""
    limit = f"{c.op} {c.limit:g} {c.unit}"
    if c.measured is None:
        return f"{c.name}: not measured (limit {limit})"
    text = f"{c.name}: {_measured(c)}, limit {limit}: FAIL by {c.excess:.3f} {c.excess_unit}"
    if c.p_value is not None:
        text += f" (McNemar p = {c.p_value:.3g})"
    return text


def _testcase(suite: ET.Element, classname: str, c: Criterion) -> None:
    case = ET.SubElement(suite, "testcase", name=c.name, classname=classname, time="0")
    if not c.passed:
        failure = ET.SubElement(case, "failure", message=_failure_message(c), type="regression")
        failure.text = _failure_message(c)
    elif not c.within:  # over the limit, let through by --significant-only: say so where CI shows it
        out = ET.SubElement(case, "system-out")
        out.text = (f"{_measured(c)} is over the limit {c.op} {c.limit:g} {c.unit}, but not significantly "
                    f"(McNemar p = {c.p_value:.3g} >= alpha {c.alpha:g}): passed by --significant-only")


def _properties(suite: ET.Element, values: list[tuple[str, object]]) -> None:
    props = ET.SubElement(suite, "properties")
    for name, value in values:
        text = _number(value) if isinstance(value, float) else ("" if value is None else str(value))
        ET.SubElement(props, "property", name=name, value=text)


def to_junit_xml(result: GateResult | GateReport, name: str | None = None) -> str:
    """One ``<testsuite>`` (named ``edgecv check``, or ``edgecv compress`` for a run's own gate) with one
    ``<testcase>`` per criterion: the class name is the model (or the stage), a missed limit is a
    ``<failure>`` whose message says by how much. The paired statistics, or why there are none, are the
    suite's properties."""
    if isinstance(result, GateReport):
        cases = [(c.stage, c.criterion) for c in result.criteria]
        props = [("reference", result.reference), ("max_drop", float(result.max_drop))]
        name = name or "edgecv compress"
    else:
        model = result.candidate.model or result.candidate.stage
        cases = [(model, c) for c in result.criteria]
        props = [("candidate", model), ("reference", result.reference.name),
                 ("reference_kind", result.reference.kind)]
        paired = result.paired
        if paired is None:
            props.append(("paired", "none: " + (result.paired_reason or "no per-image predictions")))
        else:
            worst = paired.worst_class
            props += [("paired_images", paired.images), ("accuracy_drop_points", paired.drop),
                      ("mcnemar_p", paired.p_value), ("drop_interval_low_points", paired.interval[0]),
                      ("drop_interval_high_points", paired.interval[1]),
                      ("drop_interval_confidence", paired.confidence),
                      ("top1_changed", paired.changed), ("reference_only_right", paired.b),
                      ("candidate_only_right", paired.c),
                      ("worst_class", None if worst is None else worst.name),
                      ("worst_class_drop_points", None if worst is None else worst.drop)]
            props += [(f"class_drop_points.{k.name}", k.drop) for k in paired.per_class]
        name = name or "edgecv check"
    failures = sum(not c.passed for _, c in cases)
    suite = ET.Element("testsuite", name=name, tests=str(len(cases)), failures=str(failures), errors="0",
                       skipped="0", time="0")
    _properties(suite, props)
    for classname, c in cases:
        _testcase(suite, classname, c)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
