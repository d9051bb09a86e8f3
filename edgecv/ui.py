"""Rendering for the CLI: progress bars on stderr, tables and JSON on stdout, the one-line error."""

from __future__ import annotations

import json

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .progress import Progress as Event
from .report import COLUMNS, Report


out = Console()
err = Console(stderr=True)


class ProgressBars:
    """An ``on_progress`` callback that keeps one bar per task, in the order the tasks start."""

    def __init__(self, enabled: bool = True):
        self._bars = Progress(
            TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err,
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


def report_table(report: Report, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for header, _ in COLUMNS:
        table.add_column(header, justify="left" if header in ("stage", "status") else "right")
    for row in report.rows():
        table.add_row(*row)
    return table


def show_report(report: Report, as_json: bool = False, title: str | None = None) -> None:
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        show(report_table(report, title))
        for stage in report.stages:
            if stage.reason:
                show(f"{stage.stage}: {stage.status}: {stage.reason}")


def gate_table(criteria: list[dict], title: str) -> Table:
    """One row per limit: what was measured, the limit, and by how much it was missed."""
    table = Table(title=title, title_justify="left")
    with_stage = any("stage" in c for c in criteria)
    for header in (["stage"] if with_stage else []) + ["criterion", "measured", "limit", "result"]:
        table.add_column(header, justify="left" if header in ("stage", "criterion", "result") else "right")
    for c in criteria:
        measured = "not measured" if c["measured"] is None else f"{c['measured']:.3f} {c['unit']}"
        if c["passed"]:
            result = "[green]pass[/]"
        elif c["excess"] is None:
            result = "[red]FAIL[/]"
        else:
            result = f"[red]FAIL by {c['excess']:.3f} {c['unit']}[/]"
        row = [c["name"], measured, f"{c['op']} {c['limit']:g} {c['unit']}", result]
        table.add_row(*([c["stage"]] if with_stage else []) + row)
    return table


def error(message: str) -> None:
    """The one line a user sees for an error (a library's multi-line message is folded into it)."""
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True, markup=False)
