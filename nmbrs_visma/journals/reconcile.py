"""Reconciliation: what Nmbrs' journals hold against what Visma.net holds now, per transaction, account and
dimension, to the cent.

Pure (no Prefect, no I/O): the flow (flows/reconcile.py) reads the three sides and hands them in.

- *Expected*: the transactions the pipeline would post for a run now (extract, then the core's plan and build:
  the exact payloads), so "expected" is what `post` sends, by the same code.
- *Recorded*: the posting ledger's entries of the same runs: each key sent, with its batch number, content
  fingerprint and state, and the reversals the pipeline posted (`--repost-changed`).
- *Read back*: each recorded batch as Visma.net holds it now (`GET /v2/journaltransaction/{number}`; None when
  it answers 404), and the reversing batches Visma.net's own Reverse action made (`reversingEntry`, with
  `originalBatchNumber` naming the batch), found in the listing of the batches' periods.

What Visma.net holds for a transaction is the sum of its batches: every journal batch recorded under its key,
less every reversal of one (sides swapped back). Compared per (account, subaccount, side) in integer cents, each
transaction gets one verdict: it agrees, or its batch was deleted, reversed or edited in Visma.net, or its
journal changed in Nmbrs since it was sent, or it was never sent. A subaccount's all-zero segment values are what
Visma.net books for a segment left out, so they count as "no value" (as in the content fingerprints, keys.py).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from nmbrs_visma.journals.keys import Marker, fingerprint, read_marker, reversal_key
from nmbrs_visma.journals.money import format_cents, from_cents, to_cents
from nmbrs_visma.journals.payload import json_string, subaccount_fragment
from nmbrs_visma.posting_ledger import PostingEntry, PostingState

Side = Literal["debit", "credit"]
Segments = tuple[tuple[int, str], ...]  # (segment id, value), by segment id, all-zero values left out
LineKey = tuple[str, Segments, Side]  # what one line books: account, subaccount, side
BatchRef = tuple[str, str]  # (tenant id, batch number): batch numbers are unique per Visma.net company
PeriodRef = tuple[str, str]  # (tenant id, financial period YYYYPP)
BOOKED = frozenset({PostingState.SENT, PostingState.REVERSED})  # the ledger says Visma.net holds the batch


class Verdict(StrEnum):
    AGREES = "agrees"
    EDITED = "edited"  # the batch in Visma.net differs from what was sent (amounts, accounts, subaccounts, marker)
    DELETED = "deleted"  # the batch (or a reversal of it) is gone from Visma.net (404), or voided
    REVERSED = "reversed"  # a reversing batch undoes it, and nothing replaced it
    CHANGED = "changed"  # the journal in Nmbrs changed since it was sent (post --repost-changed reposts it)
    NOT_SENT = "not sent"  # Nmbrs holds it, the pipeline would post it, the ledger records no batch
    SKIPPED = "skipped"  # nothing posted by design (a test company, a blocked debtor, a run not locked)
    UNCHECKED = "unchecked"  # could not be compared (a read failed, a journal Nmbrs holds cannot be built)


DIFFERENCES = frozenset(
    {Verdict.EDITED, Verdict.DELETED, Verdict.REVERSED, Verdict.CHANGED, Verdict.NOT_SENT, Verdict.UNCHECKED}
)
_PRIORITY = (Verdict.DELETED, Verdict.REVERSED, Verdict.EDITED, Verdict.CHANGED)  # the verdict when several hold
_SIDE_ORDER = {"debit": 0, "credit": 1}


@dataclass(frozen=True)
class Expected:
    """One journal transaction as the pipeline would post it now (a `Posting`'s identity, content and payload)."""

    key: str
    fingerprint: str
    company: int
    reference: str  # the run's reference (NM2603R1)
    administration: str  # tenant/branch/ledger
    payroll_period: str  # YYYYPP the lines belong to (part of the key)
    period_id: str  # YYYYPP it would be booked in
    payload: bytes = field(repr=False)
    company_name: str = ""


@dataclass(frozen=True)
class ReadBack:
    """What Visma.net holds now, per (tenant, batch): the batch (None: answered 404), the reversing batches that
    refer to it, and the batches that could not be read (why)."""

    batches: Mapping[BatchRef, Mapping[str, Any] | None] = field(default_factory=dict)
    reversing: Mapping[BatchRef, Sequence[str]] = field(default_factory=dict)
    unreadable: Mapping[BatchRef, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BookedLine:
    """One side of one line: its account, subaccount (shown as the segment values joined by "-"), amount."""

    account: str
    subaccount: str
    segments: Segments
    side: Side
    cents: int

    @property
    def key(self) -> LineKey:
        return self.account, self.segments, self.side


@dataclass(frozen=True)
class LineCheck:
    """Expected and found cents of one (account, subaccount, side) of a transaction."""

    account: str
    subaccount: str
    side: Side
    expected_cents: int
    found_cents: int

    @property
    def difference_cents(self) -> int:
        return self.found_cents - self.expected_cents


@dataclass(frozen=True)
class TransactionCheck:
    """One transaction's verdict (or a run's or company's, without lines), with every reason found."""

    company: int
    verdict: Verdict
    reason: str = ""
    company_name: str = ""
    reference: str = ""
    administration: str = ""
    period: str = ""  # the financial period booked (the ledger's), else where it would be booked
    batch_number: str = ""  # the journal batch Visma.net should hold now ("" when none)
    lines: tuple[LineCheck, ...] = ()

    @property
    def differs(self) -> bool:
        return self.verdict in DIFFERENCES

    @property
    def expected_cents(self) -> int:
        """The debit total Nmbrs' journal gives."""
        return sum(line.expected_cents for line in self.lines if line.side == "debit")

    @property
    def found_cents(self) -> int:
        """The debit total Visma.net holds."""
        return sum(line.found_cents for line in self.lines if line.side == "debit")


# -- the lines of each side -------------------------------------------------------------------------------------


def _segments(pairs: Iterable[tuple[Any, Any]]) -> tuple[str, Segments]:
    """The subaccount as shown (every value, by segment id) and as compared (all-zero values left out)."""
    ordered = sorted((int(segment_id), str(value)) for segment_id, value in pairs if str(value or "").strip())
    shown = "-".join(value for _, value in ordered)
    return shown, tuple((segment_id, value) for segment_id, value in ordered if set(value) != {"0"})


def _value(field_: Any) -> Any:
    return field_.get("value") if isinstance(field_, Mapping) else field_


def _cents(value: Any, where: str) -> int:
    if value is None:
        return 0
    try:
        return to_cents(Decimal(str(value)))
    except ArithmeticError as exc:  # AmountError is a ValueError; InvalidOperation an ArithmeticError
        raise ValueError(f"{where}: amount {value!r}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: amount {value!r}: {exc}") from None


def payload_lines(payload: bytes) -> list[BookedLine]:
    """The lines of a `JournalTransactionUpdateDto` payload (what the pipeline posts), one per side booked."""
    body = json.loads(payload, parse_float=Decimal)
    lines: list[BookedLine] = []
    for number, line in enumerate(body.get("journalTransactionLines") or [], start=1):
        shown, segments = _segments((s["segmentId"], s["segmentValue"]) for s in line.get("subaccount") or [])
        account = str(_value(line.get("accountNumber")) or "")
        for side in ("debit", "credit"):
            cents = _cents(_value(line.get(f"{side}AmountInCurrency")), f"payload line {number}")
            if cents:
                lines.append(BookedLine(account, shown, segments, side, cents))
    return lines


def dto_lines(dto: Mapping[str, Any]) -> list[BookedLine]:
    """The lines of a `JournalTransactionDto` as Visma.net holds them, in line-number order, one per side booked
    (amounts in the transaction's currency, as posted)."""
    lines: list[BookedLine] = []
    raw = sorted(dto.get("journalTransactionLines") or [], key=lambda line: int(line.get("lineNumber") or 0))
    for line in raw:
        subaccount = line.get("subaccount") or {}
        segments = subaccount.get("segments") if isinstance(subaccount, Mapping) else subaccount
        shown, significant = _segments((s["segmentId"], s["segmentValue"]) for s in segments or [])
        account = str(line.get("accountNumber") or "")
        where = f"batch {dto.get('batchNumber')} line {line.get('lineNumber')}"
        for side in ("debit", "credit"):
            value = line.get(f"{side}AmountInCurrency", line.get(f"{side}Amount"))
            cents = _cents(value, where)
            if cents:
                lines.append(BookedLine(account, shown, significant, side, cents))
    return lines


def booked_fingerprint(company: int, payroll_period: str, dto: Mapping[str, Any]) -> str:
    """The content fingerprint (keys.py) of the lines a batch holds now: equal to the one recorded when it was
    sent unless its lines were edited since (an account, a subaccount, a side or an amount)."""
    contents = [
        json_string(line.account) + subaccount_fragment(line.segments) + ("D" if line.side == "debit" else "C")
        + format_cents(line.cents)
        for line in dto_lines(dto)
    ]  # fmt: skip
    return fingerprint(company, payroll_period, contents)


def compare(
    expected: Sequence[BookedLine], found: Mapping[LineKey, int], shown: Mapping[LineKey, str]
) -> list[LineCheck]:
    """Expected against found cents per (account, subaccount, side), sorted; keys both sides leave at zero go."""
    wanted: Counter[LineKey] = Counter()
    display = dict(shown)
    for line in expected:
        wanted[line.key] += line.cents
        display[line.key] = line.subaccount
    checks = [
        LineCheck(key[0], display.get(key, ""), key[2], wanted.get(key, 0), found.get(key, 0))
        for key in set(wanted) | set(found)
        if wanted.get(key, 0) or found.get(key, 0)
    ]
    return sorted(checks, key=lambda c: (c.account, c.subaccount, _SIDE_ORDER[c.side]))


# -- one transaction ------------------------------------------------------------------------------------------


def tenant_of(administration: str) -> str:
    return administration.split("/", 1)[0]


@dataclass
class _Found:
    """What Visma.net holds for one key, gathered batch by batch."""

    cents: Counter[LineKey] = field(default_factory=Counter)
    shown: dict[LineKey, str] = field(default_factory=dict)
    verdicts: set[Verdict] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is fine but worth saying (a repost's reversal)
    marker_lost: bool = False  # a batch's description lost its marker: a difference even when amounts agree

    def add(self, lines: Iterable[BookedLine], *, undo: bool = False) -> None:
        """Add a batch's lines; `undo`: a reversal's, each taken off the side it reverses."""
        for line in lines:
            side: Side = ("credit" if line.side == "debit" else "debit") if undo else line.side
            key = (line.account, line.segments, side)
            self.cents[key] += -line.cents if undo else line.cents
            self.shown.setdefault(key, line.subaccount)

    def flag(self, verdict: Verdict, reason: str) -> None:
        self.verdicts.add(verdict)
        self.reasons.append(reason)


def _batch(read: ReadBack, tenant: str, number: str, found: _Found, what: str) -> Mapping[str, Any] | None:
    """The batch read back, or None (flagged: gone, voided or unreadable)."""
    ref = (tenant, number)
    if ref in read.unreadable:
        found.unreadable.append(f"{what} {number} could not be read from Visma.net ({read.unreadable[ref]})")
        return None
    dto = read.batches.get(ref)
    if dto is None:
        found.flag(Verdict.DELETED, f"{what} {number} is not in Visma.net any more (deleted)")
        return None
    if str(dto.get("status") or "") == "Voided":
        found.flag(Verdict.DELETED, f"{what} {number} is voided in Visma.net")
        return None
    return dto


def _journal_batch(
    entry: PostingEntry, tenant: str, recorded: Mapping[str, Sequence[PostingEntry]], read: ReadBack, found: _Found
) -> None:
    """One journal batch recorded under the key: its lines, less its reversals (Visma.net's and the pipeline's);
    edits since it was sent flagged."""
    number = entry.batch_number or ""
    dto = _batch(read, tenant, number, found, "batch")
    if dto is None:
        return
    found.add(dto_lines(dto))
    if booked_fingerprint(entry.company, entry.payroll_period, dto) != entry.fingerprint:
        found.flag(Verdict.EDITED, f"batch {number} was edited in Visma.net since it was sent")
    if read_marker(str(dto.get("description") or "")) != Marker(entry.key, entry.fingerprint):
        found.marker_lost = True
        found.flag(
            Verdict.EDITED,
            f"the description of batch {number} no longer carries its marker [nv:{entry.key}:{entry.fingerprint}] "
            "(the look-up before posting finds a batch by it)",
        )
    for reversing in read.reversing.get((tenant, number), ()):
        undo = _batch(read, tenant, reversing, found, f"reversing batch (of {number})")
        if undo is not None:
            found.add(dto_lines(undo), undo=True)
            found.flag(Verdict.REVERSED, f"batch {number} was reversed in Visma.net by batch {reversing}")
    for own in recorded.get(reversal_key(entry.key, entry.fingerprint), ()):
        if own.kind != "reversal" or own.state not in BOOKED or not own.batch_number or own.reverses != number:
            continue
        undo = _batch(read, tenant, own.batch_number, found, f"reversal (of {number})")
        if undo is not None:
            found.add(dto_lines(undo), undo=True)
            found.notes.append(f"batch {number} reversed by batch {own.batch_number} (content changed, reposted)")


def _not_sent_reason(entries: Sequence[PostingEntry]) -> str:
    states = {entry.state for entry in entries}
    if PostingState.INTENT in states:
        return "a create's outcome is not known (answer lost): the next post looks it up"
    if PostingState.REJECTED in states or PostingState.LOST in states:
        last = max(entries, key=lambda e: e.updated_at)
        return f"not booked: {last.message or last.state.value}"
    return "Nmbrs holds it and the posting ledger records no batch: `nmbrs-visma post` sends it"


def check_transaction(
    expected: Expected | None,
    key: str,
    recorded: Mapping[str, Sequence[PostingEntry]],
    read: ReadBack,
    *,
    company_name: str = "",
) -> TransactionCheck:
    """One key: the expected transaction (None when Nmbrs' journal no longer has it) against every batch the
    ledger records under the key, as Visma.net holds them now."""
    journals = [entry for entry in recorded.get(key, ()) if entry.kind == "journal"]
    booked = sorted(
        (entry for entry in journals if entry.state in BOOKED and entry.batch_number), key=lambda e: e.updated_at
    )
    current = [entry for entry in booked if entry.state is PostingState.SENT]
    head = (current or booked or journals or [None])[-1]
    if expected is not None:
        company, reference, administration = expected.company, expected.reference, expected.administration
        company_name = expected.company_name or company_name
    else:
        assert head is not None, "a key is checked with what Nmbrs holds, what the ledger records, or both"
        company, reference, administration = head.company, head.reference, head.administration
    want = payload_lines(expected.payload) if expected is not None else []
    base = {
        "company": company,
        "company_name": company_name,
        "reference": reference,
        "administration": administration,
        "period": head.period_id if head is not None and booked else (expected.period_id if expected else ""),
    }
    if not booked:
        assert expected is not None
        lines = tuple(compare(want, {}, {}))
        return TransactionCheck(verdict=Verdict.NOT_SENT, reason=_not_sent_reason(journals), lines=lines, **base)
    found = _Found()
    tenant = tenant_of(administration)
    for entry in booked:
        _journal_batch(entry, tenant, recorded, read, found)
    batch_number = (current[-1] if current else booked[-1]).batch_number or ""
    if found.unreadable:
        reason = "; ".join(found.unreadable + found.reasons + found.notes)
        return TransactionCheck(verdict=Verdict.UNCHECKED, reason=reason, batch_number=batch_number, **base)
    if expected is None:
        found.flag(Verdict.CHANGED, "Nmbrs' journal of the run no longer holds this payroll period's lines")
    elif current and all(entry.fingerprint != expected.fingerprint for entry in current):
        found.flag(
            Verdict.CHANGED,
            f"the journal in Nmbrs changed since batch {batch_number} was sent "
            "(`nmbrs-visma post --repost-changed` reverses it and posts the new one)",
        )
    elif not current:
        found.flag(Verdict.REVERSED, f"batch {batch_number} was reversed and no batch replaces it")
    lines = tuple(compare(want, found.cents, found.shown))
    if not any(line.difference_cents for line in lines) and not found.marker_lost:
        return TransactionCheck(
            verdict=Verdict.AGREES, reason="; ".join(found.notes), batch_number=batch_number, lines=lines, **base
        )
    verdict = next((v for v in _PRIORITY if v in found.verdicts), Verdict.EDITED)
    reasons = found.reasons or [f"Visma.net holds other amounts than batch {batch_number} was sent with"]
    reasons += found.notes
    return TransactionCheck(
        verdict=verdict, reason="; ".join(dict.fromkeys(reasons)), batch_number=batch_number, lines=lines, **base
    )


def reconcile(
    expected: Sequence[Expected],
    recorded: Sequence[PostingEntry],
    read: ReadBack,
    *,
    company_names: Mapping[int, str] | None = None,
) -> list[TransactionCheck]:
    """Every transaction of some runs: those Nmbrs' journals give (`expected`) and those the ledger records for
    the same runs (`recorded`: journals and reversals), each checked against what Visma.net holds (`read`)."""
    names = dict(company_names or {})
    by_key: dict[str, list[PostingEntry]] = defaultdict(list)
    for entry in recorded:
        by_key[entry.key].append(entry)
    wanted = {item.key: item for item in expected}
    gone = {  # booked under a key Nmbrs' journal no longer gives
        entry.key
        for entry in recorded
        if entry.kind == "journal" and entry.state in BOOKED and entry.batch_number and entry.key not in wanted
    }
    keys = [*wanted, *sorted(gone)]
    checks = [
        check_transaction(
            wanted.get(key),
            key,
            by_key,
            read,
            company_name=names.get(wanted[key].company if key in wanted else by_key[key][0].company, ""),
        )
        for key in keys
    ]
    return sort_checks(checks)


def sort_checks(checks: Iterable[TransactionCheck]) -> list[TransactionCheck]:
    return sorted(checks, key=lambda c: (c.company, c.reference, c.administration, c.period, c.batch_number))


# -- what to read ---------------------------------------------------------------------------------------------


def batches_to_read(recorded: Iterable[PostingEntry]) -> set[BatchRef]:
    """Every batch the ledger records as booked (journals and the pipeline's reversals), by tenant."""
    return {
        (tenant_of(entry.administration), entry.batch_number)
        for entry in recorded
        if entry.state in BOOKED and entry.batch_number
    }


def periods_to_list(recorded: Iterable[PostingEntry]) -> set[PeriodRef]:
    """The (tenant, financial period) of every booked journal batch: where Visma.net's reversing batches of
    them are looked for (its Reverse action books a reversal in the period of the batch it reverses)."""
    return {
        (tenant_of(entry.administration), entry.period_id)
        for entry in recorded
        if entry.kind == "journal" and entry.state in BOOKED and entry.batch_number
    }


# -- rows for tables, artifacts and scripts -------------------------------------------------------------------


class ReconcileRow(BaseModel):
    """One row of the reconciliation: a line that differs (or, with every line shown, any line), or a
    transaction's summary (its debit totals, `account` empty)."""

    model_config = ConfigDict(frozen=True)

    company: int
    company_name: str = ""
    reference: str = ""
    administration: str = ""
    period: str = ""
    batch_number: str = ""
    account: str = ""
    subaccount: str = ""
    side: str = ""
    expected: Decimal = Decimal("0.00")
    found: Decimal = Decimal("0.00")
    difference: Decimal = Decimal("0.00")
    verdict: Verdict
    reason: str = ""


def rows_of(checks: Sequence[TransactionCheck], *, all_lines: bool = False) -> list[ReconcileRow]:
    """The rows to show: a transaction that agrees in one row (its debit totals), one that differs in a row per
    line that differs; with `all_lines`, every line of every transaction."""
    rows: list[ReconcileRow] = []
    for check in sort_checks(checks):
        head: dict[str, Any] = {
            "company": check.company,
            "company_name": check.company_name,
            "reference": check.reference,
            "administration": check.administration,
            "period": check.period,
            "batch_number": check.batch_number,
            "reason": check.reason,
        }
        shown = [line for line in check.lines if all_lines or (check.differs and line.difference_cents)]
        if not shown:
            expected, found = check.expected_cents, check.found_cents
            if check.verdict is Verdict.AGREES:
                what = f"{len(check.lines)} line(s) agree" if check.lines else "nothing booked, nothing expected"
                head["reason"] = "; ".join(part for part in (what, check.reason) if part)
            rows.append(
                ReconcileRow(
                    **head,
                    expected=from_cents(expected),
                    found=from_cents(found),
                    difference=from_cents(found - expected),
                    verdict=check.verdict,
                )
            )
            continue
        for line in shown:
            rows.append(
                ReconcileRow(
                    **head,
                    account=line.account,
                    subaccount=line.subaccount,
                    side=line.side,
                    expected=from_cents(line.expected_cents),
                    found=from_cents(line.found_cents),
                    difference=from_cents(line.difference_cents),
                    verdict=check.verdict if line.difference_cents else Verdict.AGREES,
                )
            )
    return rows


def differences(checks: Iterable[TransactionCheck]) -> list[TransactionCheck]:
    return [check for check in checks if check.differs]


def summary(checks: Sequence[TransactionCheck]) -> str:
    """One line: transactions per verdict, e.g. `5 agrees, 1 edited, 1 deleted`."""
    counts = Counter(check.verdict for check in checks)
    return ", ".join(f"{counts[v]} {v.value}" for v in Verdict if counts[v]) or "nothing to reconcile"


def outcome_message(checks: Sequence[TransactionCheck]) -> str:
    """The flow run's state message: the counts, and, when anything differs, the first few transactions named
    (company, run, period, batch, verdict)."""
    found = differences(checks)
    if not found:
        return f"everything agrees ({summary(checks)})"
    named = [
        f"company {check.company} run {check.reference or '-'} period {check.period or '-'}"
        + (f" batch {check.batch_number}" if check.batch_number else "")
        + f": {check.verdict.value}"
        for check in found[:5]
    ]
    more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
    return f"{len(found)} difference(s) ({summary(checks)}): " + "; ".join(named) + more
