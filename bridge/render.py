"""Readable terminal output (rich): plan tables, check lists, progress bars, summaries.

Only for a person at a terminal.  Every function here is called only when `ctx.is_terminal`,
or degrades to nothing when it is not (`progress`): output that goes to a pipe, a file, cron or
the journal stays the plain text (or `--json`) that scripts parse.  Colour follows rich's own
rules (`NO_COLOR`, `TERM=dumb`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from bridge.core.actions import Action, changes, describe, kind_of
from bridge.core.fields import FIELDS
from bridge.core.linkrun import LinkRun
from bridge.core.report import CycleReport
from bridge.core.values import text

if TYPE_CHECKING:
    from bridge.cli import Context
    from bridge.doctor import DoctorReport

def _groups() -> dict[str, tuple[str, int]]:
    """Action kind -> (table title, order): writes first (Tracker, then Sentry, field by field),
    then what needs a person, then the quiet ones."""
    tracker: list[tuple[str, str]] = []
    for spec in FIELDS:
        if spec.set_valued:
            word = spec.tracker_word
            tracker += [("AddFollowers", f"add {word}"), ("RemoveFollowers", f"remove {word}")]
        else:
            tracker.append((f"WriteTracker{spec.name.title()}",
                            f"{'move' if spec.walks else 'set'} {spec.tracker_word}"))
    sentry = [(f"WriteSentry{spec.name.title()}", f"set {spec.name}") for spec in FIELDS if spec.sentry_body]
    titles = [(kind, f"Tracker: {what}") for kind, what in tracker]
    titles += [(kind, f"Sentry: {what}") for kind, what in sentry]
    titles += [("RecordConflict", "Conflicts (recorded, nothing written)"),
               ("ReportUnmapped", "Not synced: no counterpart"),
               ("Adopt", "In step: baseline moves, no write"),
               ("Reconcile", "Earlier writes judged: baseline moves, no write")]
    return {kind: (title, order) for order, (kind, title) in enumerate(titles, start=1)}


GROUPS = _groups()
ROWS_SHOWN = 50  # per table; the rest is counted (every row is in --json)
LEVEL_STYLE = {"pass": ("PASS", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "bold red")}


def console(ctx: Context) -> Console:
    """A console on the command's output.  Called only for a terminal, so it may use colour."""
    return Console(file=ctx.out, force_terminal=True, highlight=False, soft_wrap=False)


# -- progress ----------------------------------------------------------------------------------


class Advance(Protocol):
    completed: int

    def advance(self, steps: int = 1) -> None: ...


class _Silent:
    """Not a terminal: no bar, nothing printed; only the count is kept."""

    def __init__(self) -> None:
        self.completed = 0

    def advance(self, steps: int = 1) -> None:
        self.completed += steps


class _Bar:
    def __init__(self, bar: Progress, task: TaskID) -> None:
        self._bar = bar
        self._task = task
        self.completed = 0

    def advance(self, steps: int = 1) -> None:
        self.completed += steps
        self._bar.advance(self._task, steps)


@contextmanager
def progress(ctx: Context, total: int | None, label: str) -> Iterator[Advance]:
    """A progress bar for a long phase (backfill, full resync) while a person watches:

        with render.progress(ctx, len(candidates), "creating") as bar:
            for item in candidates:
                ...
                bar.advance()

    On anything but a terminal it yields an object whose `advance` does nothing."""
    if not ctx.is_terminal:
        yield _Silent()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(ctx), transient=True) as bar:
        yield _Bar(bar, bar.add_task(label, total=total))


# -- sync / dry-run ----------------------------------------------------------------------------


def _value(d: dict[str, Any]) -> str:
    if "value" in d:
        value = d["value"]
        shown = ", ".join(value) if isinstance(value, list) else ("(nobody)" if value is None else str(value))
        return shown + (f" / {d['resolution']}" if d.get("resolution") else "")
    if "sentry" in d or "tracker" in d:
        return f"sentry={text(d.get('sentry'))}  tracker={text(d.get('tracker'))}"
    return ""


def _results(outcome: LinkRun) -> dict[tuple[str, str], str]:
    """(field, action kind) -> ok / failed, from the writes the engine journaled."""
    return {(e.field, e.action): e.outcome for e in outcome.journal}


def grouped_actions(report: CycleReport) -> list[tuple[str, list[tuple[LinkRun, Action]]]]:
    """The report's actions grouped by kind, in `GROUPS` order (writes first)."""
    groups: dict[str, list[tuple[LinkRun, Action]]] = {}
    for outcome in report.outcomes:
        for action in changes(outcome.actions):
            groups.setdefault(kind_of(action), []).append((outcome, action))
    return sorted(groups.items(), key=lambda kv: GROUPS.get(kv[0], (kv[0], 99))[1])


def print_report(ctx: Context, report: CycleReport) -> None:
    """`sync` / `sync --dry-run` at a terminal: one table per kind of action, the failures,
    then the summary."""
    out = console(ctx)
    for kind, rows in grouped_actions(report):
        title = GROUPS.get(kind, (kind, 0))[0]
        table = Table(title=f"{title} ({len(rows)})", title_justify="left", title_style="bold")
        for column in ("Sentry", "Tracker", "Field", "Value", "Why"):
            table.add_column(column, overflow="fold")
        if not report.dry_run:
            table.add_column("Result")
        for outcome, action in rows[:ROWS_SHOWN]:
            d = describe(action)
            cells = [outcome.sentry_id, outcome.tracker_key, action.field, escape(_value(d)), escape(action.reason)]
            if not report.dry_run:
                result = _results(outcome).get((action.field, kind), "")
                style = {"ok": "green", "landed": "green", "failed": "red", "partial": "yellow",
                         "unknown": "yellow"}.get(result, "dim")
                cells.append(f"[{style}]{result or '-'}[/{style}]")
            table.add_row(*cells)
        if len(rows) > ROWS_SHOWN:
            table.caption = f"and {len(rows) - ROWS_SHOWN} more (--json lists every one)"
        out.print(table)
        out.print()
    failed = report.failures
    if failed:
        table = Table(title=f"Failed links ({len(failed)}), retried later", title_justify="left",
                      title_style="bold red")
        for column in ("Sentry", "Tracker", "Error"):
            table.add_column(column, overflow="fold")
        for outcome in failed:
            table.add_row(outcome.sentry_id, outcome.tracker_key, escape(outcome.error or ""))
        out.print(table)
        out.print()
    creates = _creates(report)
    if creates:
        table = Table(title="New issues", title_justify="left", title_style="bold")
        for column in ("Sentry", "Tracker", "What"):
            table.add_column(column)
        for row in creates:
            table.add_row(*row)
        out.print(table)
        out.print()
    print_summary(ctx, report, out)


def _creates(report: CycleReport) -> list[tuple[str, str, str]]:
    rows = [(sid, key, "created") for sid, key in report.created]
    rows += [(sid, key, "adopted (existed already)") for sid, key in report.adopted]
    rows += [(sid, "-", "would be created") for sid in report.would_create]
    rows += [(sid, "-", f"[red]failed: {escape(why)}[/red]") for sid, why in report.create_failures.items()]
    return rows


def summary_items(report: CycleReport) -> list[tuple[str, str]]:
    """(label, value) pairs of a cycle's summary, in reading order; zero counts are left out
    except the ones an operator always wants to see."""
    s = report.summary()
    requests = s.get("requests") or {}
    # Counted from the plan itself, so a dry run reports them the same way as a real run.
    kinds = [kind_of(a) for o in report.outcomes for a in o.actions]
    s["conflicts"] = max(int(s.get("conflicts") or 0), kinds.count("RecordConflict"))
    s["unmapped"] = max(int(s.get("unmapped") or 0), kinds.count("ReportUnmapped"))
    items = [
        ("links", str(s["links"])),
        ("writes planned" if report.dry_run else "writes",
         str(s["planned_writes"]) if report.dry_run
         else f"sentry {s['writes_sentry']}, tracker {s['writes_tracker']}"),
        ("failed", str(s["failures"])),
        ("conflicts", str(s["conflicts"])),
    ]
    for key, label in (("unmapped", "unmapped"), ("created", "created"), ("adopted", "adopted"),
                       ("would_create", "would create"), ("deferred", "deferred to next cycle"),
                       ("create_failures", "create failures"), ("recovered_intents", "recovered intents"),
                       ("backlinked", "back-links"), ("quarantined", "held back (flapping)")):
        if s.get(key):
            items.append((label, str(s[key])))
    items.append(("requests", f"sentry {requests.get('sentry', 0)}, tracker {requests.get('tracker', 0)}"))
    if s.get("duration_seconds") is not None:
        items.append(("time", f"{s['duration_seconds']:.2f}s"))
    if s.get("interrupted"):
        items.append(("interrupted", "yes: the rest waits for the next run"))
    if s.get("refused"):
        items.append(("refused", str(s["refused"])))
    if s.get("fatal"):
        items.append(("stopped", str(s["fatal"])))
    return items


def print_summary(ctx: Context, report: CycleReport, out: Console | None = None) -> None:
    out = out or console(ctx)
    summary = report.summary()
    if report.dry_run:
        verdict = "[bold]Dry run[/bold]: nothing was written"
    elif summary.get("refused"):
        verdict = "[red]Cycle refused[/red]: nothing was written"
    else:
        verdict = "[green]Cycle complete[/green]" if report.ok else "[red]Cycle finished with failures[/red]"
    out.print(verdict)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for label, value in summary_items(report):
        grid.add_row(label, escape(value))
    out.print(grid)


# -- doctor, status, conflicts, explain --------------------------------------------------------


def print_checks(ctx: Context, report: DoctorReport) -> None:
    out = console(ctx)
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    for check in report.checks:
        word, style = LEVEL_STYLE[check.level]
        detail = Text(check.detail)
        for note in check.notes:
            detail.append("\n  " + note, style="dim")
        if check.advice and check.level != "pass":
            detail.append("\n→ " + check.advice, style="italic")
        table.add_row(Text(word, style=style), Text(check.name), detail)
    out.print(table)
    counts = report.counts()
    out.print(f"[green]{counts['pass']} passed[/green], [yellow]{counts['warn']} warnings[/yellow], "
              f"[red]{counts['fail']} failed[/red]")


def print_table(ctx: Context, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain titled table (status cycles, conflicts, explain's fields)."""
    out = console(ctx)
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[escape(text(cell)) for cell in row])
    out.print(table)


def print_lines(ctx: Context, lines: Iterable[str]) -> None:
    """Pre-formatted lines with rich markup (headings in explain)."""
    out = console(ctx)
    for line in lines:
        out.print(line)
