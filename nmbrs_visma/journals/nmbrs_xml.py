"""Nmbrs journal XML -> the line frame.

The document is `transactions/transaction/header(date, period)/lines/line(dim1, dim2, dim3, value,
debitcredit, description)`. Nmbrs writes it in several dialects (dates `YYYYMMDD` or ISO, periods `P/YYYY` or
`YYYY/P`, decimal commas, negative values, a UTF-16 declaration on UTF-8 bytes, no `dim2`/`dim3`); all of
them are read, anything else is refused with the transaction, line and field named, because a journal that
is half understood must not reach a ledger.

Parsing is safe (no DTD, no entity expansion, no external references) and streaming (fed in chunks to a parser
target that builds no tree), so memory is bounded by the columns collected, not by the document (the fault
tests read a 50 MB one). A document without any `<!` (no DTD, comment or CDATA section: what Nmbrs writes) goes
to the C parser, with nothing to declare an entity with; any other goes through defusedxml's parser, which
refuses a DTD, entities and external references.
"""

from __future__ import annotations

import datetime as dt
import re
from xml.etree.ElementTree import ParseError, XMLParser

import numpy as np
import pandas as pd
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from nmbrs_visma.journals.frame import make_lines
from nmbrs_visma.journals.money import AmountError, parse_amount, to_cents

_CHUNK = 1 << 20
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
    parseable = _as_parseable(data, source)  # UTF-8, or a declared 8-bit encoding: `<!` is these two bytes
    parser: XMLParser
    if b"<!" in parseable:
        parser = DefusedXMLParser(target=reader, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    else:  # no declaration of any kind can be in it: the C parser, calling the target without a Python layer
        parser = XMLParser(target=reader)  # noqa: S314 (without `<!` nothing can declare an entity or a DTD)
    view = memoryview(parseable)
    try:
        for offset in range(0, len(view), _CHUNK):
            parser.feed(view[offset : offset + _CHUNK])
        parser.close()
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
    """Parser target: reads the document as it streams by, building no tree at all.

    Memory holds only the columns being collected, whatever the size of the document or of one transaction.
    Structure: transactions(1) / transaction(2) / header|lines(3) / field|line(4) / field(5).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.transactions = 0
        self.path: list[str] = []
        self.line_counts: list[int] = []
        self.periods: list[str] = []
        self.dates: list[dt.date] = []
        self.seen: set[str] = set()
        self.header: tuple[dt.date, str] | None = None
        self.lines_in_transaction = 0
        self.fields: dict[str, str] = {}
        self.field: str | None = None  # the leaf element whose text is being collected
        self.allowed: frozenset[str] | None = None  # the fields of the open <header> or <line>
        self.text: list[str] = []
        self.columns: dict[str, list] = {
            name: []
            for name in ("line", "account", "cost_center", "cost_unit", "debit_cents", "credit_cents", "description")
        }

    def current(self) -> int | None:
        return self.transactions or None

    def error(self, message: str, *, line: int | None = None, field: str | None = None) -> JournalXmlError:
        return JournalXmlError(message, source=self.source, transaction=self.current(), line=line, field=field)

    def _line_number(self) -> int | None:
        return self.lines_in_transaction if self.path[2:3] == ["lines"] else None

    # -- parser target interface -------------------------------------------------------------------------
    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = tag.rpartition("}")[2]
        if self.field is None and self.allowed is not None and name in self.allowed and name not in self.fields:
            self.field = name  # the common case: a field of a <line> or of the <header>
            self.text = []
            self.path.append(name)
            return
        self._start_container(name, attrib)
        self.path.append(name)

    def _start_container(self, name: str, attrib: dict[str, str]) -> None:
        depth = len(self.path)
        if self.field is not None:
            raise self.error(
                f"<{self.field}> holds elements, expected text", line=self._line_number(), field=self.field
            )
        if self.allowed is not None:
            where = f"<{self.path[-1]}>"
            message = (
                f"<{name}> appears twice in {where}"
                if name in self.fields
                else f"unexpected element <{name}> in {where}"
            )
            raise self.error(message, line=self._line_number(), field=name)
        if depth == 0:
            if name != "transactions":
                raise self.error(f"the root element is <{name}>, expected <transactions>")
        elif depth == 1:
            self.transactions += 1
            if name != "transaction":
                raise self.error(f"unexpected element <{name}> in <transactions>")
            self.seen.clear()
            self.header = None
            self.lines_in_transaction = 0
        elif depth == 2:
            if name not in ("header", "lines"):
                raise self.error(f"unexpected element <{name}> in <transaction>", field=name)
            if name in self.seen:
                raise self.error(f"<{name}> appears twice in <transaction>", field=name)
            self.seen.add(name)
            if name == "header":
                self.fields, self.allowed = {}, _HEADER_FIELDS
        elif depth == 3:  # inside <lines>
            self.lines_in_transaction += 1
            if name != "line":
                raise self.error(f"unexpected element <{name}> in <lines>", line=self.lines_in_transaction)
            kind = attrib.get("type")
            if kind not in (None, "detail"):
                raise self.error(
                    f"line type {kind!r} is not understood (only detail lines)",
                    line=self.lines_in_transaction,
                    field="type",
                )
            self.fields, self.allowed = {}, _LINE_FIELDS
        else:  # pragma: no cover - deeper elements only occur inside a header or a line, handled above
            raise self.error(f"unexpected element <{name}>", field=name)

    def data(self, text: str) -> None:
        if self.field is not None:
            self.text.append(text)

    def end(self, tag: str) -> None:
        name = self.path.pop()
        if self.field is not None:
            self.fields[name] = "".join(self.text).strip()
            self.field = None
            return
        depth = len(self.path)
        if depth == 3:  # </line>
            self.allowed = None
            self._line(self.fields, self.lines_in_transaction)
        elif depth == 2 and name == "header":
            self.allowed = None
            self.header = (self._date(self.fields.get("date", "")), self._period(self.fields.get("period", "")))
        elif depth == 1:
            self._close_transaction()

    def close(self) -> None:
        return None

    # -- reading -----------------------------------------------------------------------------------------
    def _close_transaction(self) -> None:
        if self.header is None:
            raise self.error("missing <header>", field="header")
        if self.lines_in_transaction == 0:
            raise self.error("the transaction has no lines", field="lines")
        date, period = self.header
        self.dates.append(date)
        self.periods.append(period)
        self.line_counts.append(self.lines_in_transaction)

    def _line(self, fields: dict[str, str], number: int) -> None:
        account = fields.get("dim1", "")
        if not account:
            raise self.error("missing ledger account", line=number, field="dim1")
        side = fields.get("debitcredit", "").lower()
        if side not in ("debit", "credit"):
            raise self.error(f"expected 'debit' or 'credit', got {side!r}", line=number, field="debitcredit")
        try:
            cents = to_cents(parse_amount(fields.get("value", "")))
        except AmountError as exc:
            raise self.error(str(exc), line=number, field="value") from None
        columns = self.columns
        columns["line"].append(number)
        columns["account"].append(account)
        columns["cost_center"].append(fields.get("dim2", ""))
        columns["cost_unit"].append(fields.get("dim3", ""))
        columns["debit_cents"].append(cents if side == "debit" else 0)
        columns["credit_cents"].append(cents if side == "credit" else 0)
        columns["description"].append(fields.get("description", ""))

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


def _local(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]
