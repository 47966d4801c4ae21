"""Rows on the command line: a table that fits the console, or JSON / CSV for scripts; progress on long runs.

Why one helper: `post`, `backfill`, `status`, `reconcile` and `accounts` list rows, and a payroll admin (or a
script) should read them all the same way. A command gives its rows as records (dicts of plain values, the
same keys in every record) and its table as one or more layouts (lists of `Column`), widest first.

- `table`: the first layout whose columns fit the console width (`COLUMNS`, the terminal, or 120 when the
  output is piped without `COLUMNS`). Columns of kind `code`, `amount` and `count` (company numbers, periods,
  batch numbers, amounts) are never split across lines; `text` columns (names, reasons) wrap at words. When no
  layout fits, each row is printed as a block of `Header: value` lines.
- `json`: a list of objects with every key of every record in the record's order; a `Decimal` is a string
  with two decimals (more only when it has more: never rounded), dates ISO 8601, tuples lists.
- `csv`: a header row of the keys, then one row per record, values written as in JSON (null as empty).

JSON and CSV put nothing else on stdout: a command's notes go through `note`, to stderr in those formats.

Errors likewise have one printer, `fail` / `fail_with`: `error: <message>` on stderr in one line, exit status 2,
no Python type names, the traceback only with `NMBRS_VISMA_DEBUG=1`.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console

OutputFormat = Literal["table", "json", "csv"]
ColumnKind = Literal["text", "code", "amount", "count"]
Record = Mapping[str, Any]
Progress = Callable[[int, int], None]

PIPED_WIDTH = 120  # the table's width when stdout is not a terminal and COLUMNS is not set
GAP = 2  # spaces between two columns
WORD_LIMIT = 30  # a text column is at least as wide as its longest word, up to this (longer words fold)

# The progress hook of the pass running in this context (`Pass.progress`'s default): the command line sets it
# around the flow it runs in-process; a deployment's run has none. Flow parameters cannot carry a callable.
pass_progress: ContextVar[Progress | None] = ContextVar("nmbrs_visma_pass_progress", default=None)


@dataclass(frozen=True)
class Column:
    """One column of a table layout.

    `key` names the record's value; `show` makes the cell's text from the record instead (a blank amount on a
    row without lines, two values in one cell). `code`, `amount` and `count` cells are never split (amounts and
    counts right-aligned); `text` cells wrap at words and are at least `min_width` wide (or their longest
    text, when shorter); spare width widens the narrowest text column first (a status, then a name, then a
    reason), each up to its longest text."""

    key: str
    header: str
    kind: ColumnKind = "text"
    show: Callable[[Record], str] | None = None
    min_width: int = 8
    style: str | None = None

    def cell(self, record: Record) -> str:
        return self.show(record) if self.show is not None else display(record.get(self.key))


# -- values ------------------------------------------------------------------------------------------------


def amount_text(value: Decimal) -> str:
    """`1234.5` -> `1234.50`: two decimals, never rounded (a value with more keeps them)."""
    cents = value.quantize(Decimal("0.01"))
    return f"{cents:f}" if cents == value else f"{value:f}"


def plain(value: Any) -> Any:
    """A record's value as JSON holds it: amounts as exact strings, enums by value, dates ISO 8601."""
    if isinstance(value, Decimal):
        return amount_text(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, tuple | list | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def display(value: Any) -> str:
    """A value as a table or CSV cell: None empty, amounts with two decimals, lists joined by `; `."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(display(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# -- consoles ----------------------------------------------------------------------------------------------


def stdout_console() -> Console:
    """The console of the command's output: the terminal's width, `COLUMNS`, or `PIPED_WIDTH` when piped."""
    import os

    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return console
    return Console(highlight=False, width=PIPED_WIDTH)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def note(message: str, output: OutputFormat = "table", *, console: Console | None = None) -> None:
    """A line for the person running the command: with the table on stdout, on stderr in a machine format."""
    target = console if console is not None else stdout_console() if output == "table" else stderr_console()
    target.print(message, markup=False, soft_wrap=True)  # one line: a path or a command is copied whole


# -- errors: one line, no Python type names ----------------------------------------------------------------

DEBUG_ENV = "NMBRS_VISMA_DEBUG"  # 1 / true / yes: a command's error also prints its traceback


def debug_enabled() -> bool:
    """Whether `NMBRS_VISMA_DEBUG` asks for tracebacks; read at each call, so a test or a shell may set it late."""
    import os

    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes"}


def one_line(text: str) -> str:
    """The text's non-blank lines joined by `; `: an error stays one line whatever its source wrote."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def fail(message: str) -> int:
    """`error: <message>` on stderr, one line; returns exit status 2 (the command itself could not run).

    Every command's errors go through here (and `fail_with`), so a payroll admin reads them all the same way."""
    from rich.text import Text

    # the message as text, never markup: a reason may hold brackets ([nv:...], [1001])
    stderr_console().print(Text.assemble(("error:", "red"), " ", one_line(message)), soft_wrap=True)
    return 2


def fail_with(exc: BaseException, *, expected: tuple[type[BaseException], ...] = ()) -> int:
    """`fail` for an exception: its message alone when it is one of the `expected` kinds (whose message says
    what is wrong), else `unexpected failure: <message>` and how to see the traceback. With `NMBRS_VISMA_DEBUG`
    set, the traceback is printed first, for any kind. Never the exception's type name: the reader is a person
    running a command, not a developer."""
    debug = debug_enabled()
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    message = one_line(str(exc))
    if isinstance(exc, expected):
        return fail(message or "the command could not run")
    hint = "" if debug else f" (run with {DEBUG_ENV}=1 for the traceback)"
    return fail(f"unexpected failure: {message or 'no message'}{hint}")


# -- the table ---------------------------------------------------------------------------------------------


def _lines_width(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.splitlines() or [""]), default=0)


def _word_width(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(word) for word in text.split()), default=0)


def fit(layout: Sequence[Column], cells: Sequence[Sequence[str]], width: int) -> list[int] | None:
    """The column widths of `layout` in `width` (gaps included), or None when it does not fit: every `code`,
    `amount` and `count` column as wide as its widest cell and header, every text column at least its minimum."""
    fixed = [column.kind != "text" for column in layout]
    columns = [[column.header, *(row[i] for row in cells)] for i, column in enumerate(layout)]
    widest = [max(_lines_width(text) for text in texts) for texts in columns]
    words = [max(_word_width(text) for text in texts) for texts in columns]
    least = [
        widest[i] if fixed[i] else min(widest[i], max(column.min_width, min(words[i], WORD_LIMIT)))
        for i, column in enumerate(layout)
    ]
    spare = width - GAP * (len(layout) - 1) - sum(least)
    if spare < 0:
        return None
    widths = list(least)
    open_ = sorted((i for i in range(len(layout)) if not fixed[i]), key=lambda i: widths[i])
    while spare > 0 and open_:  # water-filling: the narrowest text column widens first, each up to its longest line
        open_ = [i for i in open_ if widths[i] < widest[i]]
        if not open_:
            break
        level = min(widths[i] for i in open_)
        lowest = [i for i in open_ if widths[i] == level]
        higher = [widths[i] for i in open_ if widths[i] > level]
        step = min([*higher, *(widest[i] for i in lowest)]) - level
        share, rest = divmod(min(spare, step * len(lowest)), len(lowest))
        for number, i in enumerate(lowest):
            extra = share + (1 if number < rest else 0)
            widths[i] += extra
            spare -= extra
    return widths


def table_renderable(
    records: Sequence[Record],
    layouts: Sequence[Sequence[Column]],
    *,
    width: int,
    title: str | None = None,
    row_style: Callable[[Record], str | None] | None = None,
) -> Any:
    """The first layout that fits `width` as a rich table, or the rows as blocks of `Header: value` lines."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if not layouts:
        raise ValueError("a table needs at least one layout")
    for layout in layouts:
        cells = [[column.cell(record) for column in layout] for record in records]
        widths = fit(layout, cells, width)
        if widths is None:
            continue
        table = Table(
            title=title,
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1),
            collapse_padding=True,
            title_justify="left",
        )
        for column, column_width in zip(layout, widths, strict=True):
            whole = column.kind != "text"
            table.add_column(
                column.header,
                justify="right" if column.kind in {"amount", "count"} else "left",
                no_wrap=whole,
                overflow="ellipsis" if whole else "fold",
                width=column_width,
                style=column.style,
            )
        for record, row in zip(records, cells, strict=True):
            table.add_row(*(Text(cell) for cell in row), style=row_style(record) if row_style else None)
        return table
    return _blocks(records, layouts[-1], title=title, row_style=row_style)


def _blocks(
    records: Sequence[Record],
    layout: Sequence[Column],
    *,
    title: str | None,
    row_style: Callable[[Record], str | None] | None,
) -> Any:
    """Too narrow for any layout: each row as `Header: value` lines, a blank line between rows."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text(title, style="bold")] if title else []
    header_width = max(len(column.header) for column in layout)
    for index, record in enumerate(records):
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, width=header_width + 1)
        grid.add_column(overflow="fold")
        for column in layout:
            grid.add_row(f"{column.header}:", Text(column.cell(record)), style=row_style(record) if row_style else None)
        if index:
            parts.append(Text(""))
        parts.append(grid)
    return Group(*parts)


class RowsTable:
    """Records as a rich renderable that picks its layout (`table_renderable`) for the width it is printed in."""

    def __init__(
        self,
        records: Sequence[Record],
        layouts: Sequence[Sequence[Column]],
        *,
        title: str | None = None,
        row_style: Callable[[Record], str | None] | None = None,
    ) -> None:
        self.records = list(records)
        self.layouts = [list(layout) for layout in layouts]
        self.title = title
        self.row_style = row_style

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        yield table_renderable(
            self.records, self.layouts, width=options.max_width, title=self.title, row_style=self.row_style
        )


def print_rows(
    records: Sequence[Record],
    layouts: Sequence[Sequence[Column]],
    *,
    output: OutputFormat = "table",
    title: str | None = None,
    footer: str | None = None,
    row_style: Callable[[Record], str | None] | None = None,
    console: Console | None = None,
    file: Any = None,
) -> None:
    """Print `records` as `output`: a table (with `title` above and `footer` below) on `console` (stdout's by
    default), or JSON / CSV on `file` (stdout) and nothing else; a table's `footer` goes to stderr then."""
    if output == "table":
        target = console if console is not None else stdout_console()
        target.print(RowsTable(records, layouts, title=title, row_style=row_style))
        if footer:
            target.print(footer, markup=False)
        return
    stream = file if file is not None else sys.stdout
    if output == "json":
        json.dump([{key: plain(value) for key, value in record.items()} for record in records], stream, indent=2)
        stream.write("\n")
    elif output == "csv":
        keys = list(records[0]) if records else [column.key for column in layouts[0]] if layouts else []
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(keys)
        for record in records:
            writer.writerow([display(record.get(key)) for key in keys])
    else:
        raise ValueError(f"output format {output!r} is not one of table, json, csv")
    stream.flush()
    if footer:
        note(footer, output)


# -- progress ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def progress_display(label: str, *, enabled: bool = True) -> Iterator[Progress | None]:
    """While the block runs, `label: done / total` on stderr, set as the pass's progress hook (`pass_progress`).

    Only on a terminal, and only when `enabled` (the table format): a script reading JSON or CSV, or a log file,
    gets no progress lines. The hook is called from the administrations' threads; it only moves forward."""
    from rich.console import Console as RichConsole

    console = RichConsole(stderr=True, highlight=False, markup=False)  # log lines print through it: no markup
    if not enabled or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    display_ = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("administrations"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,  # stdout stays the command's output
    )
    task = display_.add_task(label, total=None)
    guard = threading.Lock()
    highest = 0

    def advance(done: int, total: int) -> None:
        nonlocal highest
        with guard:
            highest = max(highest, done)
            display_.update(task, completed=highest, total=total)

    token = pass_progress.set(advance)
    try:
        with display_, _logs_above(display_.console):
            yield advance
    finally:
        pass_progress.reset(token)


@contextlib.contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """Log handlers that print through a rich console of their own to stderr (Prefect's) print, while the
    progress shows, through the progress display's console: each log line above the progress, not into it."""
    import logging

    from rich.console import Console as RichConsole

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    swapped = []
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            own = getattr(handler, "console", None)
            if isinstance(own, RichConsole) and own is not console and own.file is console.file:
                swapped.append((handler, own))
                handler.console = console
    try:
        yield
    finally:
        for handler, own in swapped:
            handler.console = own
