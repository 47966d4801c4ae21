"""`nmbrs-visma status`: the outcomes table of the posting ledger (SQLite and PostgreSQL), what a pass records
in it (nmbrs_visma/outcomes.py), and what `status` shows from it, by payroll period, booking period, run and
company, with refused and failed rows and company names (nmbrs_visma/commands.py).

What must hold: an outcome reads back exactly as written (amounts to the cent, codes, a zoned time); a pass
replaces what an earlier pass recorded for the same runs (a run refused yesterday and sent today is sent, not
both) and leaves other runs alone; two passes recording the same run at once both succeed; a dry run records
nothing and a ledger out of reach never fails a run; postings recorded without outcomes (before the table
existed, or by a pass that stopped) still show, and the newer account of a run wins.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import logging
import threading
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nmbrs_visma.journals.models import AdministrationMapping, PeriodType
from nmbrs_visma.outcomes import StatusQuery, outcomes_of, record_pass, run_month, status_lines
from nmbrs_visma.posting_ledger import CompletedRun, PostingEntry, PostingLedger, PostingState, RunOutcome
from nmbrs_visma.results import Status, StatusRow
from tests.support import at_once


def _sent(company: int, period: str, batch: str, **changes: Any) -> StatusRow:
    fields: dict[str, Any] = {
        "company": company,
        "company_name": f"Company {company} BV",
        "administration": "1000001/1/L",
        "period": period,
        "reference": "NM2603R1",
        "lines": 7,
        "debit": Decimal("1234.56"),
        "credit": Decimal("1234.56"),
        "batch_number": batch,
        "status": Status.SENT,
        "run_period": "2026-03",
    }
    return StatusRow(**{**fields, **changes})


def _refused(company: int, **changes: Any) -> StatusRow:
    fields: dict[str, Any] = {
        "company": company,
        "company_name": f"Company {company} BV",
        "administration": "1000003/1/L",
        "period": "202603",
        "reference": "NM2603R1",
        "status": Status.REFUSED,
        "reason": f"company {company} run 3: the company's debtor is blocked",
        "codes": ("debtor_blocked",),
        "run_period": "2026-03",
    }
    return StatusRow(**{**fields, **changes})


FOUR_WEEKS = {1006: PeriodType.FOUR_WEEKS}


def _march_pass() -> list[StatusRow]:
    """A March pass: a run with a January correction (booked in 202601), a 4-weekly run whose period 3 ends on
    22 March, a refusal, a company-level failure and a company with nothing new."""
    return [
        _sent(1001, "202603", "000001"),
        _sent(1001, "202601", "000002", debit=Decimal("-208.95"), credit=Decimal("-208.95")),
        _sent(1006, "202603", "000003", reference="NM2603R1", run_period="2026/03", company_name="Vierweken BV"),
        _refused(2001),
        StatusRow(company=4_200_000_001, status=Status.FAILED, reason="reading the payroll runs failed: HTTP 503"),
        StatusRow(company=1007, company_name="Stil BV", status=Status.NO_RUN, reason="nothing new in Nmbrs"),
    ]


def _keys(outcomes: list[RunOutcome]) -> list[tuple[int, str, str]]:
    return [(outcome.company, outcome.period, outcome.status) for outcome in outcomes]


# -- the outcomes table ----------------------------------------------------------------------------------------


def test_outcomes_read_back_exactly_and_filter_by_run_period_month_booking_run_and_company(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url)
    before = dt.datetime.now(dt.UTC)
    ledger.record_outcomes(outcomes_of(_march_pass(), FOUR_WEEKS, "flow-run-1"))
    everything = ledger.outcomes()
    assert len(everything) == 6
    correction = next(o for o in everything if o.company == 1001 and o.period == "202601")
    assert correction.debit == Decimal("-208.95") and correction.credit == Decimal("-208.95")
    assert correction.booked_period == "202601" and correction.run_month == "2026-03"
    assert correction.batch_number == "000002" and correction.flow_run_id == "flow-run-1"
    assert correction.recorded_at is not None and correction.recorded_at.tzinfo is not None
    assert correction.recorded_at >= before - dt.timedelta(seconds=5)
    refused = next(o for o in everything if o.company == 2001)
    assert refused.codes == ("debtor_blocked",) and refused.booked_period == "" and refused.status == "refused"
    assert refused.reason == "company 2001 run 3: the company's debtor is blocked"
    failed = next(o for o in everything if o.company == 4_200_000_001)  # beyond int32: a BIGINT column
    assert failed.reference == "" and failed.status == "failed"

    march = ledger.outcomes(months=("2026-03", "2026-03"))  # the runs of March, wherever they are booked
    assert _keys(march) == [
        (1001, "202601", "sent"),
        (1001, "202603", "sent"),
        (1006, "202603", "sent"),
        (2001, "202603", "refused"),
    ]
    assert [o.company for o in ledger.outcomes(months=("2026-04", "2026-12"))] == []
    assert {o.company for o in ledger.outcomes(payroll=((2026, 3), (2026, 3)))} == {1001, 1006, 2001}
    assert _keys(ledger.outcomes(booked_period="202601")) == [(1001, "202601", "sent")]
    assert len(ledger.outcomes(reference="nm2603r1")) == 4
    assert _keys(ledger.outcomes(companies=[2001, 1007])) == [(1007, "", "no run"), (2001, "202603", "refused")]
    assert PostingLedger(ledger_url).outcomes(companies=[1006])[0].company_name == "Vierweken BV"  # another instance


def test_a_pass_replaces_what_an_earlier_pass_recorded_for_its_runs_and_leaves_other_runs_alone(
    ledger_url: str,
) -> None:
    ledger = PostingLedger(ledger_url)
    ledger.record_outcomes(outcomes_of(_march_pass(), FOUR_WEEKS))
    reversal = _sent(2001, "202603", "000010", reason="reversal of batch 000009", administration="1000003/1/L")
    again = [
        reversal,  # the refusal fixed: a reversal and the new posting, both under the same key
        _sent(2001, "202603", "000011", administration="1000003/1/L"),
        StatusRow(company=4_200_000_001, status=Status.NO_RUN, reason="nothing new in Nmbrs"),  # its failure gone
    ]
    ledger.record_outcomes(outcomes_of(again, {}))
    found = ledger.outcomes(companies=[2001, 4_200_000_001])
    assert [(o.company, o.status, o.batch_number) for o in found] == [
        (2001, "sent", "000010"),
        (2001, "sent", "000011"),
        (4_200_000_001, "no run", None),
    ]
    assert len(ledger.outcomes(companies=[1001, 1006])) == 3  # runs this pass did not see stay as recorded


def test_recording_a_pass_is_all_or_nothing(ledger_url: str) -> None:
    from nmbrs_visma.posting_ledger import LedgerUnavailable

    ledger = PostingLedger(ledger_url)
    ledger.record_outcomes(outcomes_of(_march_pass(), FOUR_WEEKS))
    broken = [_sent(2001, "202603", "000011"), _sent(1001, "202603", "000012", lines=2**70)]  # no database holds it
    with pytest.raises(LedgerUnavailable):
        ledger.record_outcomes(outcomes_of(broken, {}))
    assert _keys(ledger.outcomes(companies=[1001, 2001])) == [  # the earlier outcomes, none deleted
        (1001, "202601", "sent"),
        (1001, "202603", "sent"),
        (2001, "202603", "refused"),
    ]


def test_two_passes_recording_the_same_run_at_once_both_succeed(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url)
    start = threading.Barrier(2)

    def record(batch: str) -> None:
        start.wait(10)
        for _ in range(10):
            ledger.record_outcomes(outcomes_of([_sent(1001, "202603", batch), _refused(1001, period="202602")], {}))

    at_once([functools.partial(record, batch) for batch in ("000001", "000002")], timeout=60)  # an error fails here
    found = ledger.outcomes(companies=[1001])
    assert [(o.period, o.status) for o in found] == [("202603", "sent"), ("202602", "refused")]  # by administration
    assert found[0].batch_number in {"000001", "000002"}


# -- what a pass records -----------------------------------------------------------------------------------


def _work(mappings: dict[int, AdministrationMapping] | None = None, completed: Any = None) -> Any:
    """The parts of a `Pass` that `record_pass` reads."""
    return SimpleNamespace(
        completed=completed or {}, selection=SimpleNamespace(mappings=mappings or {}), flow_run_id="flow-run-7"
    )


def test_a_real_pass_is_recorded_with_its_flow_run_and_a_dry_run_is_not(tmp_path: Path) -> None:
    ledger = PostingLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    dry = [_sent(1001, "202603", "", status=Status.DRY_RUN, batch_number=None, payload_file="/tmp/p.json")]
    record_pass(ledger, dry, _work(), dry_run=True)
    assert ledger.outcomes() == []
    record_pass(ledger, [*_march_pass(), *dry], _work(), dry_run=False)  # a dry run's row is never an outcome
    found = ledger.outcomes()
    assert len(found) == 6 and {o.flow_run_id for o in found} == {"flow-run-7"}
    assert all(o.status != "dry run" for o in found)
    # the 4-weekly company was first booked by this pass: its period type comes from its completed runs
    assert next(o for o in found if o.company == 1006).run_month == ""
    ledger.complete_runs(
        [
            CompletedRun(
                run_id="r-1006", company=1006, year=2026, period_end=3, period_type="4-weeks", reference="NM2603R1",
                transactions=1,
            )
        ]
    )  # fmt: skip
    record_pass(ledger, _march_pass(), _work(), dry_run=False)
    assert next(o for o in ledger.outcomes() if o.company == 1006).run_month == "2026-03"


def test_a_ledger_out_of_reach_is_a_warning_never_a_failed_run(caplog: pytest.LogCaptureFixture) -> None:
    ledger = PostingLedger("postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="nmbrs_visma.outcomes"):
        record_pass(ledger, _march_pass(), _work(), dry_run=False)  # returns, raises nothing
    assert "not recorded" in caplog.text and "cannot be reached" in caplog.text


def test_run_month_follows_the_company_period_type() -> None:
    assert run_month("2026-03", None) == "2026-03"
    assert run_month("2026/03", PeriodType.FOUR_WEEKS) == "2026-03"  # 23 February .. 22 March
    assert run_month("2026/13", PeriodType.FOUR_WEEKS) == "2027-01"  # the 13th four weeks end on 3 January
    assert run_month("2026/53", PeriodType.WEEK) == "2027-01"
    assert run_month("2026/14", PeriodType.WEEK) == "2026-04"
    assert run_month("2026/13", None) == ""  # the type is not known: found by --period 2026/13 only
    assert run_month("", None) == ""
    mapping = AdministrationMapping(
        nmbrs_company=7001, visma_account="a", branch="1", ledger="L", period_type=PeriodType.WEEK,
        period_mapping="end_date",
    )  # fmt: skip
    row = _sent(7001, "202604", "000001", run_period="2026/14")
    (outcome,) = outcomes_of([row], {7001: PeriodType.WEEK})
    assert outcome.run_month == "2026-04" and outcome.booked_period == "202604"
    from nmbrs_visma.outcomes import period_types

    assert period_types({}, {7001: mapping}) == {7001: PeriodType.WEEK}


# -- what status shows -------------------------------------------------------------------------------------


def _posting(company: int, period_id: str, batch: str, state: PostingState, **changes: Any) -> PostingEntry:
    fields: dict[str, Any] = {
        "key": f"k{company}{period_id}{batch}",
        "fingerprint": "f1",
        "state": state,
        "company": company,
        "reference": "NM2603R1",
        "payroll_period": period_id,
        "period_id": period_id,
        "administration": "1000001/1/L",
        "lines": 3,
        "debit": Decimal("10.00"),
        "credit": Decimal("10.00"),
        "batch_number": batch or None,
    }
    return PostingEntry(**{**fields, **changes})


def _put(ledger: PostingLedger, *entries: PostingEntry) -> None:
    with ledger.holding([entry.key for entry in entries]) as held:
        held.put(*entries)


def test_status_adds_postings_recorded_without_outcomes_and_the_newer_account_of_a_run_wins(tmp_path: Path) -> None:
    ledger = PostingLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    _put(ledger, _posting(1001, "202603", "000001", PostingState.SENT))  # covered by the outcome recorded after it
    _put(ledger, _posting(1010, "202603", "000020", PostingState.SENT))  # before outcomes were recorded
    ledger.record_outcomes(outcomes_of(_march_pass(), FOUR_WEEKS))
    ledger.record_outcomes(outcomes_of([StatusRow(company=1010, company_name="Oud BV", status=Status.NO_RUN)], {}))
    # a later pass sent 2001's run and stopped before it recorded its outcomes
    _put(ledger, _posting(2001, "202603", "000030", PostingState.SENT, administration="1000003/1/L"))
    _put(ledger, _posting(2001, "202604", "", PostingState.INTENT, administration="1000003/1/L", key="k-intent"))
    lines = status_lines(StatusQuery(), ledger)
    shown = [(line.row.company, line.row.period, line.row.status.value, line.row.batch_number) for line in lines]
    assert shown == [
        (1001, "202601", "sent", "000002"),
        (1001, "202603", "sent", "000001"),
        (1006, "202603", "sent", "000003"),
        (1010, "202603", "sent", "000020"),  # the legacy posting, named after its company's recorded outcome
        (2001, "202603", "sent", "000030"),  # the newer account: the refusal recorded before is gone
        (2001, "202604", "pending", None),
        (4_200_000_001, "", "failed", None),  # company-level, no run: shown without a run filter
    ]  # 1007's and 1010's `no run` rows are not shown
    assert {line.row.company_name for line in lines if line.row.company in {1010, 2001}} == {
        "Oud BV",
        "Company 2001 BV",
    }
    assert all(line.recorded_at for line in lines)
    march = status_lines(StatusQuery.parse(period="2026-03"), ledger)
    assert 4_200_000_001 not in {line.row.company for line in march}  # a run filter leaves company rows out
    booked = status_lines(StatusQuery.parse(booked="202601"), ledger)
    assert [(line.row.company, line.row.period) for line in booked] == [(1001, "202601")]
    assert {
        line.row.company for line in status_lines(StatusQuery.parse(period="2026/03", companies=[1006]), ledger)
    } == {1006}


def test_status_query_options_are_checked() -> None:
    with pytest.raises(ValueError, match="YYYYPP"):
        StatusQuery.parse(booked="2026-03")
    with pytest.raises(ValueError, match="2026/3x"):
        StatusQuery.parse(period="2026/3x")
    query = StatusQuery.parse(period="2026/3", run=" nm2603r1 ", companies=[1002, 1001, 1002])
    assert query.companies == (1001, 1002) and query.run == "NM2603R1"
    assert str(query) == "payroll period 2026/03, run NM2603R1, company 1001, 1002"


def test_the_status_command_prints_every_outcome_with_names_at_100_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nmbrs_visma.commands import run_status

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("NMBRS_VISMA_LEDGER_URL", url)
    monkeypatch.setenv("COLUMNS", "100")
    assert run_status(period="2026-03", companies=None) == 0
    assert "Nothing recorded yet (payroll period 2026-03)." in capsys.readouterr().out
    PostingLedger(url).record_outcomes(outcomes_of(_march_pass(), FOUR_WEEKS, "flow-run-9"))

    assert run_status(period="2026-03", companies=None) == 1  # a refusal among them
    out = capsys.readouterr().out
    table = out.splitlines()
    assert all(len(line) <= 100 for line in table)
    for value in ("1001", "1006", "2001", "202601", "202603", "000001", "000002", "000003", "1234.56", "-208.95"):
        assert any(value in line.split() for line in table), f"{value} split or missing:\n{out}"
    assert "refused" in out and "blocked" in out and "Vierweken" in out
    assert "3 sent, 1 refused" in out

    assert run_status(period=None, companies=[1001], booked="202601", output="json") == 0
    captured = capsys.readouterr()
    (item,) = json.loads(captured.out)
    assert item["period"] == "202601" and item["debit"] == "-208.95" and item["flow_run_id"] == "flow-run-9"
    assert item["company_name"] == "Company 1001 BV" and item["recorded_at"].endswith("+00:00")
    assert "1 sent" in captured.err  # the summary: not on stdout in a machine format

    assert run_status(period=None, companies=None, payroll_run="NM2603R1", output="csv") == 1
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["company"], row["status"]) for row in parsed] == [
        ("1001", "sent"),
        ("1001", "sent"),
        ("1006", "sent"),
        ("2001", "refused"),
    ]
    assert run_status(period=None, companies=None, output="json") == 1
    assert {item["status"] for item in json.loads(capsys.readouterr().out)} == {"sent", "refused", "failed"}
