"""The shared typer app, error handling and output helpers for every command."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from clonefleet.errors import ClonefleetError, UsageError

app = typer.Typer(
    name="clonefleet",
    help="Plan, simulate, provision and measure fleets of VMs cloned from golden images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

#: Where commands print tables and text. Its width is set by :func:`fit_console` when a command
#: starts: ``COLUMNS`` when set, else the terminal's width, else 80 (a pipe or a file).
console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object instead of a table.")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (numpy values converted)."""
    sys.stdout.write(json.dumps(obj, default=_default, indent=2, allow_nan=False) + "\n")


def parse_whole(text: str, flag: str, low: int, high: int) -> int:
    """The whole number ``flag`` gives, from ``low`` to ``high``, or a one-line :class:`UsageError`.

    Written the way people write counts: ``1000``, ``1e3``, ``1_000``. ``inf``, ``nan``, ``2.5``,
    numbers out of bounds and 400-digit numbers (never turned into a float) are refused.
    """
    allowed = f"a whole number from {low:,} to {high:,}"
    shown = repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"
    try:
        whole = int(text)  # exact, however many digits: compared as an int, never through a float
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise UsageError(f"{flag} = {shown}: {allowed}") from None
        if not math.isfinite(number) or number != int(number):
            raise UsageError(f"{flag} = {shown}: {allowed}") from None
        whole = int(number)
    if not low <= whole <= high:
        raise UsageError(f"{flag} = {shown}: {allowed}")
    return whole


class Whole(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on, not in 8.1
    """The click type of a whole-number flag with bounds (:func:`parse_whole`).

    Typer's own ``int`` refuses ``1e3``, which fleet sizes have always been written as; this type
    takes it and refuses ``inf``, ``nan``, fractions and 400-digit numbers with one line, exit 2.
    """

    def __init__(self, low: int, high: int, name: str = "N") -> None:
        self.low, self.high, self.name = low, high, name

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        flag = param.opts[0] if param is not None and param.opts else "value"
        try:
            return parse_whole(str(value), flag, self.low, self.high)
        except UsageError as exc:
            self.fail(exc.message.partition(" = ")[2], param, ctx)


#: Narrowest and widest output the tables are laid out for (a COLUMNS outside is clamped).
MIN_COLUMNS, MAX_COLUMNS = 40, 1000


def output_columns() -> int:
    """The width to lay stdout out for: ``COLUMNS`` when it is a whole number, else the terminal's
    width when stdout is one, else 80 (piped or redirected: the width most readers of a file use)."""
    given = os.environ.get("COLUMNS", "").strip()
    if given.isdigit() and int(given) > 0:
        return max(MIN_COLUMNS, min(MAX_COLUMNS, int(given)))
    try:
        if sys.stdout.isatty():
            return max(MIN_COLUMNS, min(MAX_COLUMNS, os.get_terminal_size(sys.stdout.fileno()).columns))
    except (OSError, ValueError, AttributeError):
        pass
    return 80


def fit_console() -> None:
    """Lay :data:`console` out for :func:`output_columns` (read anew for every command run)."""
    console.width = output_columns()


@dataclass(frozen=True)
class Col:
    """One column of a :func:`print_table` table.

    ``header`` is the full name; ``short`` an abbreviation used when the table is too wide for
    the screen (then a legend under the table spells it out: ``short = header``); ``right``
    right-aligns numbers; ``wrap`` lets long text (a source, a reason) wrap inside its cell,
    given at least :data:`WRAP_MIN` columns, instead of forcing another layout.
    """

    header: str
    short: str = ""
    right: bool = False
    wrap: bool = False


#: The fewest columns a wrapping column (``Col(wrap=True)``) is given before the layout changes.
WRAP_MIN = 24


def print_table(title: str, columns: Sequence[Col], rows: Sequence[Sequence[str]], *,
                out: Console | None = None) -> None:
    """Print a table that fits the screen: the one way every command prints its tables.

    Laid out for the console's width (``COLUMNS``, the terminal, or 80 when piped; see
    :func:`fit_console`), trying in turn:

    1. the table with full headers, when every cell fits on one line;
    2. the table with each column's ``short`` header, and a legend line under it
       (``S/full = S / full, ...``), when that fits;
    3. a vertical layout: one block per row, ``header  value`` per line, which fits any width.

    ``rows`` hold the cells as text (rich markup allowed, e.g. ``[red]no[/red]``); the first
    column names the row (the block's heading in the vertical layout). Use it instead of
    building a ``rich.table.Table``, e.g.::

        print_table("600 VMs", [Col("function"), Col("clones/GI", "k", right=True)],
                    [["snapshot", "200"], ["thin", "600"]])
    """
    target = out if out is not None else console
    width = target.width

    def build(short: bool, probe: bool = False) -> Table:
        table = Table(title=title)
        for col in columns:
            table.add_column(col.short if short and col.short else col.header,
                             justify="right" if col.right else "left", no_wrap=not col.wrap)
        for row in rows:
            # A probe measures wrapping columns at their least width: the table fits if that does.
            table.add_row(*(("x" * WRAP_MIN if probe and col.wrap else cell) for col, cell in zip(columns, row,
                                                                                                   strict=True)))
        return table

    for short in (False, True):
        if short and not any(c.short for c in columns):
            break
        probe = build(short, probe=True)
        if target.measure(probe, options=target.options.update_width(10**6)).maximum <= width:
            target.print(build(short))
            if short:
                target.print("legend: " + ", ".join(f"{c.short} = {c.header}" for c in columns if c.short),
                             markup=False)
            return
    target.print(f"[bold]{title}[/bold]" if title else "")
    label_width = max(len(c.header) for c in columns)
    for row in rows:
        target.print(f"[bold]{row[0]}[/bold]")
        for col, cell in zip(columns[1:], row[1:], strict=True):
            target.print(f"  {col.header:<{label_width}}  {cell}")


QUIET_HELP = "Draw no progress on stderr (results and errors still print)."
QUIET_OPTION = typer.Option(False, "--quiet", help=QUIET_HELP)
#: What a trace may be, wherever a command takes one.
TRACE_KINDS = ("a fio iolog or a folder of them, blkparse text, CSV, a QEMU block trace (any may be gzipped), "
               "or a shipped trace by name, e.g. debian-boot")
TRACE_FORMAT_HELP = "Trace format: auto (from the first line), fio, blkparse, csv or qemu."

#: Set by the global ``clonefleet --quiet``: no progress display for the command that follows.
_quiet_all = False


@app.callback()
def _global_options(quiet: bool = typer.Option(False, "--quiet", help=QUIET_HELP + " For every command.")) -> None:
    global _quiet_all
    _quiet_all = quiet


def _quiet(stage: str, done: int, total: int) -> None:
    """Report nothing."""


class _TimeLeftColumn(ProgressColumn):
    """'about 12 s left' once rich can estimate it from the steps done; blank while it cannot."""

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        if not task.total or left is None or task.finished:
            return Text("")
        return Text(f"about {left:,.0f} s left" if left >= 1 else "under 1 s left", style="progress.remaining")


@contextmanager
def progress_display(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A callback ``report(stage, done, total)`` (total 0: unknown) that draws one transient line on
    stderr while the block runs: the stage, a bar, done of total, the time spent and, when the total
    is known, the time left (from the pace of the steps done; a count that starts again, e.g. runs after
    the trace's VMs, starts a new clock). Silent unless enabled (not ``--json``, not ``--quiet``),
    the global ``--quiet`` is off and stderr is a terminal; never a byte on stdout. A new stage text
    is drawn at once, so a stage shorter than a refresh still shows."""
    if not enabled or _quiet_all or not err_console.is_terminal:
        yield _quiet
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  _TimeLeftColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("starting", total=None)
        shown: dict[str, object] = {"stage": "", "done": 0}

        def report(stage: str, done: int, total: int) -> None:
            if done < int(str(shown["done"])):  # a new count (the trace drawn, now the runs): its own clock and pace
                bar.reset(task)
            bar.update(task, description=stage, completed=done, total=total or None)
            if stage != shown["stage"]:
                bar.refresh()  # drawn at once, however short the stage
            shown.update(stage=stage, done=done)

        yield report


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit."""
    err_console.print(f"clonefleet: error: {message}", markup=False)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the app, turning every expected error into one line and an exit status."""
    fit_console()
    try:
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False,
                     prog_name="clonefleet")
    except ClonefleetError as exc:
        if exc.abandons_threads:  # threads stuck in a call that never returns: do not join them at exit
            err_console.print(f"clonefleet: error: {exc.message}", markup=False)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        fail(exc.message, exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        raise SystemExit(2) from None
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        fail(f"{exc.format_message()}{hint}", 2)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        raise SystemExit(1) from None
    except OSError as exc:
        fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("CLONEFLEET_DEBUG"):
            raise
        fail(f"internal error ({exc.__class__.__name__}: {exc}); rerun with CLONEFLEET_DEBUG=1 for the "
             "traceback and report it", 1)
    if isinstance(result, int) and result:
        raise SystemExit(result)


