"""Nmbrs journal XML -> the line frame.

The document is `transactions/transaction/header(date, period)/lines/line(dim1, dim2, dim3, value,
debitcredit, description)`. Nmbrs writes it in several dialects (dates `YYYYMMDD` or ISO, periods `P/YYYY` or
`YYYY/P`, decimal commas, negative values, a UTF-16 declaration on UTF-8 bytes, no `dim2`/`dim3`); all of
them are read, anything else is refused with the transaction, line and field named, because a journal that
is half understood must not reach a ledger.

Parsing is safe (defusedxml: no DTD, no entity expansion, no external references) and streaming
(`iterparse`, each transaction cleared once read), so a 50 MB document stays within a small memory budget.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable
from xml.etree.ElementTree import Element, ParseError

import numpy as np
import pandas as pd
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from nmbrs_visma.journals.frame import make_lines
from nmbrs_visma.journals.money import AmountError, parse_amount, to_cents

_HEADER_FIELDS = frozenset({"date", "period"})
_LINE_FIELDS = frozenset({"dim1", "dim2", "dim3", "value", "debitcredit", "description"})
_DECLARATION = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*)([\"'])([A-Za-z0-9._-]+)\2", re.ASCII)
_UTF16_NAMES = frozenset({"utf-16", "utf16", "utf-16le", "utf-16be", "ucs-2", "unicode"})
_PERIOD_FIRST = re.compile(r"(\d{1,2})/(\d{4})", re.ASCII)  # P/YYYY
_YEAR_FIRST = re.compile(r"(\d{4})/(\d{1,2})", re.ASCII)  # YYYY/P
_DATE_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)  # YYYYMMDD
_DATE_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?", re.ASCII)


class JournalXmlError(ValueError):
    """A journal document that cannot be read exactly; says which source, transaction, line and field."""

    def __init__(
        self,
        message: str,
        *,
        source: str = "",
        transaction: int | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.transaction = transaction
        self.line = line
        self.field = field
        self.reason = message
        where = [source or "journal XML"]
        if transaction is not None:
            where.append(f"transaction {transaction}")
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {message}")


def parse_journal_xml(data: bytes, *, source: str = "") -> pd.DataFrame:
    """Parse one Nmbrs journal document into a line frame (see `frame.COLUMNS`), amounts in int64 cents."""
    if not data or not data.strip():
        raise JournalXmlError("the document is empty", source=source)
    reader = _Reader(source)
    stream = io.BytesIO(_as_parseable(data, source))
    try:
        for event, element in iterparse(stream, events=("start", "end"), forbid_dtd=True):
            if event == "start":
                reader.start(element)
            else:
                reader.end(element)
    except ParseError as exc:
        raise JournalXmlError(
            f"not well-formed XML ({exc}); the document may be truncated", source=source, transaction=reader.current()
        ) from None
    except DefusedXmlException as exc:
        raise JournalXmlError(
            f"refused: the document declares a DTD, entities or external references ({type(exc).__name__})",
            source=source,
        ) from None
    if reader.transactions == 0:
        raise JournalXmlError("the document holds no <transaction>", source=source)
    return reader.frame()


class _Reader:
    """Collects the columns of the line frame while the document streams by, one element at a time.

    Every `<line>` is read at its end tag and removed from the tree at once, so memory holds the columns
    being collected, never the document's tree (a single transaction may hold most of a 50 MB file).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.transactions = 0
        self.path: list[Element] = []
        self.line_counts: list[int] = []
        self.periods: list[str] = []
        self.dates: list[dt.date] = []
        self.seen: set[str] = set()
        self.header: tuple[dt.date, str] | None = None
        self.lines_in_transaction = 0
        self.columns: dict[str, list] = {
            name: []
            for name in ("line", "account", "cost_center", "cost_unit", "debit_cents", "credit_cents", "description")
        }

    def current(self) -> int | None:
        return self.transactions or None

    def error(self, message: str, *, line: int | None = None, field: str | None = None) -> JournalXmlError:
        return JournalXmlError(message, source=self.source, transaction=self.current(), line=line, field=field)

    def start(self, element: Element) -> None:
        tag = _local(element.tag)
        depth = len(self.path)
        parent = _local(self.path[-1].tag) if self.path else ""
        self.path.append(element)
        if depth == 0:
            if tag != "transactions":
                raise self.error(f"the root element is <{tag}>, expected <transactions>")
        elif depth == 1:
            self.transactions += 1
            if tag != "transaction":
                raise self.error(f"unexpected element <{tag}> in <transactions>")
            self.seen.clear()
            self.header = None
            self.lines_in_transaction = 0
        elif depth == 2:
            if tag not in ("header", "lines"):
                raise self.error(f"unexpected element <{tag}> in <transaction>", field=tag)
            if tag in self.seen:
                raise self.error(f"<{tag}> appears twice in <transaction>", field=tag)
            self.seen.add(tag)
        elif depth == 3 and parent == "lines":
            self.lines_in_transaction += 1
            if tag != "line":
                raise self.error(f"unexpected element <{tag}> in <lines>", line=self.lines_in_transaction)

    def end(self, element: Element) -> None:
        self.path.pop()
        depth = len(self.path)
        parent = self.path[-1] if self.path else None
        if depth == 3 and parent is not None and _local(parent.tag) == "lines":
            self._line(element, self.lines_in_transaction)
            parent.remove(element)
        elif depth == 2 and _local(element.tag) == "header":
            fields = _children(element, _HEADER_FIELDS, self.error)
            self.header = (self._date(_text(fields.get("date"))), self._period(_text(fields.get("period"))))
        elif depth == 1 and parent is not None:
            self._close_transaction()
            element.clear()
            parent.remove(element)

    def _close_transaction(self) -> None:
        if self.header is None:
            raise self.error("missing <header>", field="header")
        if self.lines_in_transaction == 0:
            raise self.error("the transaction has no lines", field="lines")
        date, period = self.header
        self.dates.append(date)
        self.periods.append(period)
        self.line_counts.append(self.lines_in_transaction)

    def _line(self, line: Element, number: int) -> None:
        kind = line.get("type")
        if kind not in (None, "detail"):
            raise self.error(f"line type {kind!r} is not understood (only detail lines)", line=number, field="type")
        fields = _children(line, _LINE_FIELDS, lambda m, field=None: self.error(m, line=number, field=field))
        account = _text(fields.get("dim1"))
        if not account:
            raise self.error("missing ledger account", line=number, field="dim1")
        side = _text(fields.get("debitcredit")).lower()
        if side not in ("debit", "credit"):
            raise self.error(f"expected 'debit' or 'credit', got {side!r}", line=number, field="debitcredit")
        value = _text(fields.get("value"))
        try:
            cents = to_cents(parse_amount(value))
        except AmountError as exc:
            raise self.error(str(exc), line=number, field="value") from None
        columns = self.columns
        columns["line"].append(number)
        columns["account"].append(account)
        columns["cost_center"].append(_text(fields.get("dim2")))
        columns["cost_unit"].append(_text(fields.get("dim3")))
        columns["debit_cents"].append(cents if side == "debit" else 0)
        columns["credit_cents"].append(cents if side == "credit" else 0)
        columns["description"].append(_text(fields.get("description")))

    def _date(self, text: str) -> dt.date:
        match = _DATE_COMPACT.fullmatch(text) or _DATE_ISO.fullmatch(text)
        try:
            if match is None:
                raise ValueError
            return dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            raise self.error(f"expected a date YYYYMMDD or YYYY-MM-DD, got {text!r}", field="date") from None

    def _period(self, text: str) -> str:
        if match := _PERIOD_FIRST.fullmatch(text):
            period, year = int(match[1]), int(match[2])
        elif match := _YEAR_FIRST.fullmatch(text):
            year, period = int(match[1]), int(match[2])
        else:
            raise self.error(f"expected a period P/YYYY or YYYY/P, got {text!r}", field="period")
        if not 1 <= period <= 53 or year < 1900:
            raise self.error(f"period {text!r} is out of range", field="period")
        return f"{year:04d}{period:02d}"

    def frame(self) -> pd.DataFrame:
        counts = np.asarray(self.line_counts, dtype=np.int64)
        columns = dict(self.columns)
        columns["transaction"] = np.repeat(np.arange(1, len(counts) + 1, dtype=np.int32), counts)
        columns["period_id"] = np.repeat(np.asarray(self.periods, dtype=object), counts)
        columns["date"] = np.repeat(np.asarray(self.dates, dtype="datetime64[ns]"), counts)
        return make_lines(columns)


def _as_parseable(data: bytes, source: str) -> bytes:
    """Undo the UTF-16 declaration Nmbrs puts on UTF-8 bytes; real UTF-16 (BOM or NULs) is re-encoded."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:4] in (b"<\x00?\x00", b"\x00<\x00?"):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise JournalXmlError("the document is neither valid UTF-16 nor UTF-8", source=source) from None
        data = text.encode("utf-8")
        return _declare_utf8(data, force=True)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return _declare_utf8(data, force=False)


def _declare_utf8(data: bytes, *, force: bool) -> bytes:
    match = _DECLARATION.match(data)
    if match is None:
        return data
    if not force and match[3].decode("ascii").lower() not in _UTF16_NAMES:
        return data  # a declared 8-bit encoding is honoured by the parser
    quote = match[2]
    return match[1] + quote + b"UTF-8" + quote + data[match.end() :]


def _children(element: Element, allowed: frozenset[str], error: Callable[..., JournalXmlError]) -> dict[str, Element]:
    """Leaf fields by local name; unknown, repeated or nested ones are refused (they might carry meaning)."""
    found: dict[str, Element] = {}
    for child in element:
        name = _local(child.tag)
        if name not in allowed:
            raise error(f"unexpected element <{name}> in <{_local(element.tag)}>", field=name)
        if name in found:
            raise error(f"<{name}> appears twice in <{_local(element.tag)}>", field=name)
        if len(child):
            raise error(f"<{name}> holds elements, expected text", field=name)
        found[name] = child
    return found


def _text(element: Element | None) -> str:
    return "" if element is None else (element.text or "").strip()


def _local(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]
