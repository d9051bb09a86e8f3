"""Rendering for the CLI: progress bars on stderr, every table and JSON on stdout, the one-line error.

The library returns dataclasses; this module is the only place that turns them into rows and colours.
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Column
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from edgecv.measure.report import Report, arm_instructions, columns, drop_in_words
from edgecv.progress import Progress as Event

out = Console()
err = Console(stderr=True)


class ProgressBars:
    """An ``on_progress`` callback that keeps one bar per task, in the order the tasks start."""

    def __init__(self, enabled: bool = True):
        # on an 80-column terminal the bar and the note give way first; the task and its count never do
        self._bars = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=26)),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=6)),
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[note]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=2)),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, expand=True,
            disable=not enabled or not err.is_terminal,  # bars are for people; a log gets the results only
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        self._bars.start()
        return self

    def __exit__(self, *exc):
        self._bars.stop()

    def __call__(self, event: Event) -> None:
        task = self._tasks.get(event.task)
        if task is None:
            task = self._tasks[event.task] = self._bars.add_task(event.task, total=event.total, note="")
        self._bars.update(task, completed=event.done, total=event.total, note=event.message)


def show(renderable) -> None:
    """Prints to stdout; piped or captured output is wide enough that a table never wraps in a log."""
    out.width = None if out.is_terminal else 200  # None: the terminal's own width
    out.print(renderable, highlight=False, markup=not isinstance(renderable, str))  # file names may hold [ ]


def show_json(value) -> None:
    out.print_json(json.dumps(value, default=str))


def error(message: str) -> None:
    """The one line a user sees for an error (a library's multi-line message is folded into it)."""
    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True, markup=False)


def _table(*headers: str, title: str | None = None) -> Table:
    return Table(*headers, title=title, title_justify="left")


def report_table(report: Report, title: str | None = None, wide: bool = False) -> Table:
    """The stages as rows: the compact columns fit an 80-column terminal, ``wide`` shows every one."""
    table = _table(title=title)
    for header, _ in columns(wide):
        table.add_column(header, justify="left" if header in ("stage", "status") else "right",
                         overflow="fold" if header == "stage" else "ellipsis", no_wrap=header != "stage")
    for row in report.rows(wide):
        table.add_row(*row)
    return table


def show_report(report: Report, as_json: bool = False, title: str | None = None, wide: bool = False) -> None:
    if as_json:
        show_json(report.to_dict())
        return
    show(report_table(report, title, wide))
    for line in report.notes():
        show(line)


def gate_table(criteria: list[dict], title: str) -> Table:
    """One row per limit: what was measured, the limit, and by how much it was missed."""
    table = _table(title=title)
    with_stage = any("stage" in c for c in criteria)
    for header in (["stage"] if with_stage else []) + ["criterion", "measured", "limit", "result"]:
        table.add_column(header, justify="left" if header in ("stage", "criterion", "result") else "right")
    for c in criteria:
        measured = "not measured" if c["measured"] is None else f"{c['measured']:.3f} {c['unit']}"
        if c.get("p_value") is not None:
            measured += f" (p = {c['p_value']:.3g})"
        if c["passed"] and (c.get("excess") or 0) > 0:  # over the limit, but not a significant drop
            result = f"[yellow]pass (not significant, p = {c['p_value']:.3g})[/]"
        elif c["passed"]:
            result = "[green]pass[/]"
        elif c["excess"] is None:
            result = "[red]FAIL[/]"
        else:
            result = f"[red]FAIL by {c['excess']:.3f} {c.get('excess_unit', c['unit'])}[/]"
        row = [c["name"], measured, f"{c['op']} {c['limit']:g} {c['unit']}", result]
        table.add_row(*([c["stage"]] if with_stage else []) + row)
    return table


def sparsity_table(result, title: str) -> Table:
    """``prune``: each layer's measured zeros."""
    table = _table("layer", "weights", "zeros", "sparsity %", title=title)
    for layer in result.layers:
        table.add_row(layer.layer, f"{layer.weights:,}", f"{layer.zeros:,}", f"{100 * layer.sparsity:.1f}")
    table.add_row("all kernels", "", "", f"{100 * result.sparsity:.1f}")
    return table


def channel_tables(cut, title: str) -> tuple[Table, Table]:
    """``prune-channels``: channels and MACs per layer, then the totals before and after."""
    per_layer = _table("layer", "channels before", "after", "MACs before", "after", title=title)
    for layer in cut.result.layers:
        per_layer.add_row(layer.layer, str(layer.before), str(layer.after),
                          f"{cut.layer_macs_before.get(layer.layer, 0):,}", f"{cut.layer_macs_after.get(layer.layer, 0):,}")
    r = cut.result
    summary = _table("", "before", "after", "change")
    summary.add_row("parameters", f"{r.params_before:,}", f"{r.params_after:,}",
                    f"{r.params_before / r.params_after:.2f}x fewer")
    summary.add_row("MACs", f"{r.macs_before:,}", f"{r.macs_after:,}", f"{r.macs_before / r.macs_after:.2f}x fewer")
    summary.add_row("int8 p50 ms (1 thread)", f"{cut.p50_before_ms:.4f}", f"{cut.p50_after_ms:.4f}",
                    f"{cut.p50_before_ms / cut.p50_after_ms:.2f}x faster")
    summary.add_row("test accuracy %", f"{100 * cut.parent_accuracy:.2f}", f"{100 * cut.final_accuracy:.2f}",
                    f"{100 * (cut.final_accuracy - cut.parent_accuracy):+.2f} points (straight after the cut: "
                    f"{100 * r.pruned_accuracy:.2f})")
    return per_layer, summary


def cluster_table(result, title: str) -> Table:
    table = _table("layer", "distinct kernel values", title=title)
    for layer, unique in result.unique_values.items():
        table.add_row(layer, str(unique))
    return table


def sensitivity_table(result, title: str) -> Table:
    table = _table("layer", "RMSE / scale", "accuracy % with it float", title=title)
    for s in result.layers:
        table.add_row(s.layer, f"{s.error:.3f}", f"{100 * s.accuracy_kept_float:.2f}")
    return table


def merged_table(merged) -> Table:
    """``device merge``: one row per model, a column group per device; emulated latency is starred."""

    compared = merged.compared()
    arm = [sorted({cpu for m in merged.models for cpu in (arm_instructions(merged.cell(d, m)) or {})})
           for d in merged.devices]  # per device, the CPU models it has emulated instruction counts for
    table = _table(title="accuracy % / p50 ms / p90 ms per device")
    table.add_column("model")
    table.add_column("KB", justify="right")
    table.add_column("gzip KB", justify="right")
    for i, _ in enumerate(merged.devices):
        for header in ("acc %", "p50 ms", "p90 ms") + (("top-1 ≠",) if compared else ()):
            table.add_column(f"{header}\n[{i + 1}]", justify="right")
        for cpu in arm[i]:
            table.add_column(f"{cpu.replace('cortex-', '').upper()} M instr\n[{i + 1}]", justify="right")
    for model in merged.models:
        cells = [merged.cell(d, model) for d in merged.devices]
        sized = next((c for c in cells if c is not None and c.size_bytes), None)
        row = [model, f"{sized.size_bytes / 1024:,.1f}" if sized else "", f"{sized.gzip_bytes / 1024:,.1f}" if sized else ""]
        for device, c in zip(merged.devices, cells):
            latency = (c.latency or {}) if c else {}
            mark = "*" if device.emulated else ""  # emulated latency is not meaningful
            row += ["" if c is None or c.accuracy is None else f"{100 * c.accuracy:.2f}",
                    "" if latency.get("p50_ms") is None else f"{latency['p50_ms']:.4f}{mark}",
                    "" if latency.get("p90_ms") is None else f"{latency['p90_ms']:.4f}{mark}"]
            if compared:
                differs = merged.top1_differences(device, model)
                row.append("" if differs is None else f"{differs[0]}/{differs[1]}")
            counts = arm_instructions(c) or {}
            row += [f"{counts[cpu] / 1e6:.3f}" if cpu in counts else "" for cpu in arm[merged.devices.index(device)]]
        table.add_row(*row)
    return table


def show_merged(merged) -> None:

    show(merged_table(merged))
    for i, device in enumerate(merged.devices):
        data = device.report.data
        warning = (device.report.environment.get("device") or {}).get("pairing_warning")
        isa = device.report.environment.get("isa")
        show(f"[{i + 1}] {device.label}: {data.get('test_images', '?')} images"
             + (f"; ISA {' '.join(isa)}" if isa else "")
             + ("; EMULATED: latency (*) not meaningful" if device.emulated else "")
             + (f"; warning: {warning}" if warning else ""))
    if merged.compared():
        show("top-1 ≠: images whose predicted class differs from the first result with per-image predictions "
             "on the same images")
    if any(arm_instructions(merged.cell(d, m)) for d in merged.devices for m in merged.models):
        from edgecv.device.armcost import UNIT

        show(f"M instr: millions of {UNIT}")
    if merged.mixed_images():
        note("note: the files were scored on different test images; compare accuracies with care")


def edgetpu_table(report, title: str) -> Table:
    table = _table("operator", "count", "status", title=title)
    for op, count, status in report.table():
        table.add_row(op, str(count), status)
    return table


def show_edgetpu(report, model_name: str) -> None:
    how = "edgetpu_compiler" if report.method == "compiler" else "static check (edgetpu_compiler not on PATH)"
    show(edgetpu_table(report, f"{model_name}: {how}"))
    if report.refused:
        show(f"refused: {report.refused}")
    for o in report.unmapped():
        show(f"op {o.index} {o.op}: {o.reason}")
    show(f"{report.tpu_ops} ops on the Edge TPU, {report.cpu_ops} on the CPU"
         + (f"; compiled {report.compiled}" if report.compiled else ""))


def show_trained(done) -> None:
    """``train``: accuracy, the epochs run (and how a budget fitted them), where the model went."""
    if done.skipped_files:
        note(f"warning: skipped {done.skipped_files} unreadable file(s) under {done.source}")
    plan = done.result.plan
    fitted = (f", fitted to a {plan.budget_seconds / 60:g}-minute budget (training ended at "
              f"{plan.epoch_ends[-1]:.1f} s)" if plan is not None and plan.epoch_ends else "")
    show(f"test accuracy {100 * done.result.test_accuracy:.2f} % after {done.epochs} epochs "
         f"({done.result.seconds:.0f} s{fitted}); saved {done.out}")


def show_compressed(report: Report, folder, as_json: bool, wide: bool = False, junit=None) -> None:
    """``compress``: the table of stages, where the files went, and the gate when one was asked for (also as
    JUnit XML into ``junit``)."""
    if junit is not None and report.gate is not None:
        from edgecv.fsutil import write_text
        from edgecv.measure.junit import to_junit_xml

        write_text(junit, to_junit_xml(report.gate))
    if report.data.get("skipped_files"):
        note(f"warning: skipped {report.data['skipped_files']} unreadable file(s) under {report.data['source']}")
    show_report(report, as_json, f"edgecv compress -> {folder}", wide)
    if as_json:
        return
    note(f"wrote {folder}/report.json, report.md, pareto.png and the models")
    if report.resumed:
        note(f"reused from an earlier run into {folder} (same options, data and files): {', '.join(report.resumed)}")
    if report.gate is not None:
        show(gate_table([c.to_dict() for c in report.gate.criteria], f"gate: max drop {report.gate.max_drop:g} points"))


def show_search(result, folder, as_json: bool, wide: bool = False) -> None:
    """``search``: every candidate as a row, the choice (or the miss), where the files went."""
    from edgecv.flows.search import as_report, verdict

    if as_json:
        show_json(result.to_dict())
        return
    show_report(as_report(result), title=f"edgecv search -> {folder}", wide=wide)
    show(verdict(result))
    best = "best_packerOut.zip" if result.objective.value == "imx500-memory" else "best.tflite"
    note(f"wrote {folder}/search.json, search.md, search.png" + (f" and {best}" if result.chosen else ""))


def show_gate(result, model_name: str, as_json: bool, junit=None, output=None) -> None:
    """``check``: the limits table and the image-by-image comparison; the verdict also as JUnit XML and JSON
    files when asked (written before the exit code, so a CI job that fails still has them)."""
    from edgecv.fsutil import write_text
    from edgecv.measure.junit import to_junit_xml

    if junit is not None:
        write_text(junit, to_junit_xml(result))
    if output is not None:
        write_text(output, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    if as_json:
        show_json(result.to_dict())
        return
    show(gate_table([c.to_dict() for c in result.criteria],
                    f"check {model_name}: {'passed' if result.passed else 'REGRESSED'}"))
    paired = result.paired
    if paired is None:
        note(f"no image-by-image comparison: {result.paired_reason}")
        return
    low, high = paired.interval
    line = (f"on the same {paired.images} images: {drop_in_words(paired.drop, 'the reference')} (drop "
            f"{100 * paired.confidence:.0f} % interval {low:.2f} to {high:.2f} points), McNemar p = "
            f"{paired.p_value:.3g}; top-1 changed on {paired.changed} images ({paired.b} right -> wrong, "
            f"{paired.c} wrong -> right)")
    worst = paired.worst_class
    if worst is not None and worst.drop > 0:
        line += f"; the class that lost most: {worst.name or worst.label}, {drop_in_words(worst.drop, 'the reference')}"
    show(line)



def show_diagnosis(diagnosis) -> None:
    """``doctor``: one line per check (the device script's ``--check`` format), a failure in red."""
    colour = {"warn": "yellow", "fail": "red"}
    for check in diagnosis.checks:
        show(Text(check.line(), style=colour.get(check.status, "")))


def show_quantized(done) -> None:
    """``quantize``: the file, its mode and I/O, its size, which tool made it, and a mixed file's int4 layers."""
    io = f", {done.io_type.value} input and output" if done.io_type is not None else ""
    io += (f", flip-averaged: two inferences per image, {done.details.get('mirror')} mirror"
           if done.details.get("flip_average") else "")
    show(f"wrote {done.path} ({done.mode.value}{io}, {done.size_bytes / 1024:,.1f} KB, "
         f"gzip {done.gzip_bytes / 1024:,.1f} KB; made by {done.details.get('made_by')})")
    mixed = done.details.get("mixed")
    if mixed:
        table = _table("layer", "op", "params", "bits", "int4 rounding",
                       title=f"{len(mixed['int4_layers'])} of {len(mixed['layers'])} weight layers at int4: "
                             f"{100 * mixed['accuracy']:.2f} % vs int8 {100 * mixed['int8_accuracy']:.2f} % on "
                             f"{mixed['search_images']} train images, {mixed['size_bytes'] / 1024:,.1f} vs "
                             f"{mixed['int8_bytes'] / 1024:,.1f} KB")
        for layer in mixed["layers"]:
            table.add_row(layer["name"], layer["op"], f"{layer['params']:,}", str(layer["bits"]), layer["method"] or "")
        show(table)


def npu_table(report) -> Table:
    """``npu``: one row per accelerator configuration, Vela's estimate."""
    table = _table("accelerator", "system config", "MHz", "NPU cycles", "total cycles", "inf/s", "SRAM KB",
                   "flash KB", "DRAM KB", "ops NPU/CPU", title=f"{report.model}: Vela's estimate")
    for e in report.estimates:
        graph = f"{len(e.ops) - len(e.cpu_placed)}/{len(e.cpu_placed)}"
        table.add_row(e.accelerator, e.system_config, f"{e.clock_hz / 1e6:g}", f"{e.cycles_npu:,}",
                      f"{e.cycles_total:,}", f"{e.inferences_per_second:,.0f}", f"{e.sram_bytes / 1024:,.1f}",
                      f"{e.flash_bytes / 1024:,.1f}", f"{e.dram_bytes / 1024:,.1f}", graph)
    return table


def show_npu(report) -> None:
    show(npu_table(report))
    first = report.estimates[0]
    placements = {(o.index, o.op): o for e in report.estimates for o in e.ops if o.target == "CPU"}
    if placements:
        for o in sorted(placements.values(), key=lambda o: o.index):
            on = [e.accelerator for e in report.estimates if any(c.index == o.index for c in e.cpu_placed)]
            show(f"op {o.index} {o.op}: CPU on {', '.join(on)} ({o.reason})")
    else:
        show(f"all {len(first.ops)} ops of the graph on the NPU on every configuration")
    for e in report.estimates:
        show(f"{e.accelerator}: weights in {e.weights_in}; boards: {e.boards}"
             + (f"; compiled {e.compiled}" if e.compiled else ""))
    show(f"an estimate by Vela {first.vela}: a compiler's model of the NPU at its configuration's clock, not a "
         "board (no CPU-op time, no bus contention, no driver)")


def show_micro(result) -> None:
    show(f"{result.model} on {result.runtime}: {100 * result.accuracy:.2f} % top-1 on {result.images} images, "
         f"LiteRT {100 * result.reference_accuracy:.2f} % ({result.reference_runtime}, same int8 inputs); "
         f"same top-1 on {100 * result.agreement:.1f} % of images")
    show(f"arena: {result.arena_bytes:,} bytes ({result.arena_bytes / 1024:,.1f} KiB), {result.arena_note}")
    if result.sources:
        show(f"wrote {', '.join(result.sources)}")
