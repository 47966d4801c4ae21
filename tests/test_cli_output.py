"""The command line's output (nmbrs_visma/output.py, the status layouts of results.py, the errors and progress of
commands.py): tables that fit 100 columns without splitting an amount, a period, a batch or a company number;
JSON and CSV that parse, with exact amounts and nothing else on stdout; one-line errors; the progress hook.

The commands themselves, against the emulators and a real Prefect server, are in tests/test_sandbox_cli.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from nmbrs_visma.output import Column, amount_text, fit, note, print_rows, progress_display
from nmbrs_visma.results import Status, StatusRow, rich_table, status_layouts, status_record

LONG_REASON = (
    "company 2001 run 3: the company's debtor 102 (Slapende Holding) is blocked in Nmbrs; account 4999 "
    "(Old wages account) is inactive in Visma.net; financial period 202612 is inactive in the general ledger"
)


def _rows() -> list[StatusRow]:
    """Rows of every shape a pass reports: long names, large and negative amounts, 13-period ids, long reasons."""
    return [
        StatusRow(
            company=1001,
            company_name="Bakkerij Noord BV",
            administration="1000001/1/L",
            period="202603",
            reference="NM2603R1",
            lines=14,
            debit=Decimal("1234567.89"),
            credit=Decimal("1234567.89"),
            batch_number="000123",
            status=Status.SENT,
            reason="released",
            run_period="2026-03",
        ),
        StatusRow(
            company=1003,
            company_name="Bakkerij Oost en Omstreken Holding Nederland BV",
            administration="1000001/1/L",
            period="202602",
            reference="NM2603R1",
            lines=7,
            debit=Decimal("-208.95"),
            credit=Decimal("-208.95"),
            batch_number="000124",
            status=Status.ALREADY_SENT,
            run_period="2026-03",
        ),
        StatusRow(
            company=4_200_000_001,
            company_name="Vierweken Groothandel",
            administration="1000002/MAIN-BRANCH/L",
            period="202613",
            reference="NM2613R2",
            lines=120,
            debit=Decimal("98765432.10"),
            credit=Decimal("98765432.10"),
            batch_number="BATCH-0000004711",
            status=Status.PENDING,
            reason="outcome unknown (answer lost); the next run looks it up before posting",
            run_period="2026/13",
        ),
        StatusRow(
            company=2001,
            company_name="Slapende Holding BV",
            administration="1000003/1/L",
            period="202603",
            reference="NM2603R1",
            status=Status.REFUSED,
            reason=LONG_REASON,
            codes=("debtor_blocked", "inactive_account"),
            run_period="2026-03",
        ),
        StatusRow(company=1005, company_name="Bakkerij West BV", status=Status.NO_RUN, reason="nothing new"),
    ]


def _render(renderable: object, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get().splitlines()


def _whole(lines: list[str], value: str) -> int:
    """How many lines hold `value` as a whole word (split across lines, or glued to other text, it is not)."""
    return sum(1 for line in lines if value in line.split())


def _must_be_whole(rows: list[StatusRow]) -> list[str]:
    values = []
    for row in rows:
        values += [str(row.company), row.period, row.reference, row.batch_number or ""]
        if row.lines:
            values += [amount_text(row.debit)]
    return [value for value in values if value]


@pytest.mark.parametrize("width", [100, 120, 160, 200])
def test_status_tables_fit_the_width_and_split_no_amount_period_batch_or_company_number(width: int) -> None:
    rows = _rows()
    lines = _render(rich_table(rows, title="Payroll journals 2026-03"), width)
    assert all(len(line.rstrip()) <= width for line in lines), "\n".join(lines)
    for row in rows:
        for value in _must_be_whole([row]):
            assert _whole(lines, value), f"{value!r} split or missing at width {width}:\n" + "\n".join(lines)
    words = {word for line in lines for word in line.split()}
    for text in (LONG_REASON, "Bakkerij Oost en Omstreken Holding Nederland BV"):  # wrapped at words, none lost
        assert set(text.split()) <= words, set(text.split()) - words


def test_a_narrow_console_gets_fewer_columns_and_every_column_at_a_wide_one() -> None:
    rows = _rows()
    wide = _render(rich_table(rows), 200)
    narrow = _render(rich_table(rows), 100)
    assert "Lines" in wide[0] and "Debit" in wide[0] and "Credit" in wide[0]
    header = " ".join(narrow[:3])
    assert "Amount" in header and "Lines" not in header  # balanced journals: one amount column
    realistic = [rows[0], rows[1], rows[3]]
    unbalanced = [*realistic, rows[0].model_copy(update={"credit": Decimal("1.00"), "company": 1009})]
    header = " ".join(_render(rich_table(unbalanced), 100)[:3])
    assert "Debit" in header and "Credit" in header


def test_too_narrow_for_any_layout_prints_each_row_as_a_block_of_lines() -> None:
    rows = _rows()[:1]
    lines = _render(rich_table(rows), 50)
    assert all(len(line.rstrip()) <= 50 for line in lines)
    assert any(line.startswith("Amount:") and "1234567.89" in line.split() for line in lines), lines
    assert any(line.startswith("Batch:") and "000123" in line.split() for line in lines)


def test_fit_keeps_codes_whole_and_refuses_what_cannot_fit() -> None:
    layout = [Column("a", "A", kind="code"), Column("b", "Reason", min_width=10)]
    cells = [["X" * 30, "a short reason"], ["Y", "word " * 20]]
    widths = fit(layout, cells, 60)
    assert widths is not None and widths[0] == 30 and sum(widths) + 2 <= 60
    assert fit(layout, cells, 35) is None  # 30 + gap + 10 does not fit


def test_json_is_a_list_of_objects_with_exact_amounts_and_stable_keys(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows()
    print_rows([status_record(row) for row in rows], status_layouts(rows), output="json", footer="5 rows")
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # stdout holds the JSON and nothing else
    assert "5 rows" in captured.err and "5 rows" not in captured.out
    assert [item["company"] for item in data] == [row.company for row in rows]
    assert all(list(item) == list(StatusRow.model_fields) for item in data)
    assert data[0]["debit"] == "1234567.89" and data[1]["credit"] == "-208.95" and data[4]["debit"] == "0.00"
    assert data[2]["status"] == "pending" and data[3]["codes"] == ["debtor_blocked", "inactive_account"]
    assert data[4]["batch_number"] is None


def test_csv_has_a_header_row_and_parses_back(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows()
    print_rows([status_record(row) for row in rows], status_layouts(rows), output="csv")
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(parsed) == len(rows)
    assert list(parsed[0]) == list(StatusRow.model_fields)
    assert parsed[2]["debit"] == "98765432.10" and parsed[3]["reason"] == LONG_REASON
    assert parsed[3]["codes"] == "debtor_blocked; inactive_account" and parsed[4]["batch_number"] == ""


def test_amounts_keep_two_decimals_and_are_never_rounded() -> None:
    assert amount_text(Decimal("12")) == "12.00"
    assert amount_text(Decimal("-0.5")) == "-0.50"
    assert amount_text(Decimal("1.005")) == "1.005"  # more precision than cents: shown, never rounded away
    assert amount_text(Decimal("1E+3")) == "1000.00"


def test_other_records_print_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    """What `reconcile` and `accounts` reuse: any records, dates and amounts included."""
    records = [{"account": "demo", "expires": dt.date(2026, 4, 1), "days_left": 12, "total": Decimal("5")}]
    layout = [
        Column("account", "Account"),
        Column("expires", "Expires", kind="code"),
        Column("total", "Total", kind="amount"),
    ]
    print_rows(records, [layout], output="json")
    assert json.loads(capsys.readouterr().out) == [
        {"account": "demo", "expires": "2026-04-01", "days_left": 12, "total": "5.00"}
    ]
    console = Console(width=100, record=True, color_system=None)
    with console.capture() as captured:
        print_rows(records, [layout], console=console, title="Accounts")
    assert "2026-04-01" in captured.get() and "5.00" in captured.get()


def test_notes_go_to_stdout_with_a_table_and_to_stderr_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    note("Payload files in /tmp/x", "json")
    captured = capsys.readouterr()
    assert captured.out == "" and "/tmp/x" in captured.err
    note("Payload files in /tmp/y", "table")
    captured = capsys.readouterr()
    assert "/tmp/y" in captured.out and captured.err == ""


def test_the_dry_run_folder_is_printed_after_the_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmbrs_visma.commands import _report

    monkeypatch.setenv("COLUMNS", "100")
    payload = tmp_path / "dry-run-1" / "202603-company-1001.json"
    row = _rows()[0].model_copy(
        update={"status": Status.DRY_RUN, "reason": f"payload in {payload.name}", "payload_file": str(payload)}
    )
    assert _report([row], "Payroll journals 2026-03 (dry run)") == 0
    out = capsys.readouterr().out
    assert f"Payload files (nothing was sent): {payload.parent}" in out
    table = out.split("Payload files")[0]
    assert all(len(line) <= 100 for line in table.splitlines())
    assert _report([row], "dry", "json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["payload_file"] == str(payload) and str(payload.parent) in captured.err


# -- one-line errors -------------------------------------------------------------------------------------------


def _error_line(exc: BaseException, capsys: pytest.CaptureFixture[str]) -> str:
    from nmbrs_visma.commands import _error

    assert _error(exc) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_an_expected_error_is_its_message_on_one_line_without_a_type_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmbrs_visma.posting_ledger import LedgerUnavailable

    monkeypatch.delenv("NMBRS_VISMA_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    line = _error_line(LedgerUnavailable("the posting ledger sqlite:///x cannot be reached (disk I/O error)"), capsys)
    assert line == "error: the posting ledger sqlite:///x cannot be reached (disk I/O error)"
    line = _error_line(ValueError("period '2026/3x' is not a period\nsecond line [bold]x[/]"), capsys)
    assert line == "error: period '2026/3x' is not a period; second line [bold]x[/]"  # brackets are text
    assert "ValueError" not in line


def test_an_unexpected_error_is_one_line_with_the_debug_hint_and_the_traceback_only_in_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmbrs_visma.commands import _error

    monkeypatch.delenv("NMBRS_VISMA_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    line = _error_line(KeyError("tenant"), capsys)
    assert line == "error: unexpected failure: 'tenant' (run with NMBRS_VISMA_DEBUG=1 for the traceback)"
    assert "KeyError" not in line and "Traceback" not in line
    monkeypatch.setenv("NMBRS_VISMA_DEBUG", "1")
    try:
        raise KeyError("tenant")
    except KeyError as exc:
        assert _error(exc) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().endswith("error: unexpected failure: 'tenant'")


def test_a_malformed_option_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from nmbrs_visma.commands import run_backfill, run_post, run_status

    assert run_post(period="2026/3x", companies=None, journal_file=None, dry_run=True) == 2
    assert run_backfill(start="2026-03", end="2026-01", companies=None, dry_run=True) == 2
    assert run_status(period=None, companies=None, booked="2026-03") == 2
    err = capsys.readouterr().err
    assert "2026/3x" in err and "ends before it starts" in err and "YYYYPP" in err
    assert "Error:" not in err and "Traceback" not in err


# -- progress ----------------------------------------------------------------------------------------------


def test_the_pass_takes_the_progress_hook_of_its_context_and_reports_administrations_done() -> None:
    """`Pass.progress` defaults to the hook the command line sets; `Administrations._done` calls it with
    (administrations done, total) as each one finishes, from the administrations' threads."""
    from nmbrs_visma.flows.administrations import Administrations, Pass
    from nmbrs_visma.flows.connections import Connections, Selection
    from nmbrs_visma.journals.models import AdministrationMapping
    from nmbrs_visma.output import pass_progress
    from nmbrs_visma.tasks.runs import RunFilter

    mappings = {
        number: AdministrationMapping(nmbrs_company=number, visma_account=account, branch="1", ledger="L")
        for number, account in ((1001, "a"), (1002, "a"), (1003, "b"))
    }
    calls: list[tuple[int, int]] = []
    guard = threading.Lock()

    def hook(done: int, total: int) -> None:
        with guard:
            calls.append((done, total))

    selection = Selection(mappings=mappings, nmbrs_accounts=dict.fromkeys(mappings))
    common = {"selection": selection, "connections": Connections(), "ledger": None, "run_filter": RunFilter()}
    assert Pass(**common, workers=1, today=dt.date(2026, 4, 1), post=False).progress is None  # type: ignore[arg-type]
    token = pass_progress.set(hook)
    try:
        work = Pass(**common, workers=1, today=dt.date(2026, 4, 1), post=False)  # type: ignore[arg-type]
    finally:
        pass_progress.reset(token)
    assert work.progress is hook
    administrations = Administrations(work)
    groups = list(administrations._groups.items())
    assert len(groups) == 2  # (account a, branch 1, ledger L) holds 1001 and 1002; account b holds 1003
    threads = [
        threading.Thread(target=administrations._done, args=(group, companies, [])) for group, companies in groups
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(calls) == [(1, 2), (2, 2)]
    work.reads.shutdown()


def test_no_progress_display_when_not_a_terminal_or_not_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    from nmbrs_visma.output import pass_progress

    with progress_display("Posting") as hook:  # pytest captures stderr: not a terminal
        assert hook is None and pass_progress.get() is None
    with progress_display("Posting", enabled=False) as hook:
        assert hook is None
    assert capsys.readouterr().err == ""


def test_while_a_flow_runs_the_console_logs_leave_tracebacks_out_unless_debugging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    from nmbrs_visma.commands import _one_line_logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("prefect.flow_runs.test-one-line")
    logger.addHandler(handler)

    def logged(debug: bool) -> str:
        if debug:
            monkeypatch.setenv("NMBRS_VISMA_DEBUG", "1")
        else:
            monkeypatch.delenv("NMBRS_VISMA_DEBUG", raising=False)
        stream.seek(0)
        stream.truncate()
        with _one_line_logs():
            try:
                raise RuntimeError("the ledger is gone")
            except RuntimeError:
                logger.exception("Encountered exception during execution")
        return stream.getvalue()

    try:
        quiet = logged(debug=False)
        assert quiet.strip() == "Encountered exception during execution"
        assert "Traceback" in logged(debug=True)
        stream.seek(0)
        stream.truncate()
        try:
            raise RuntimeError("after the run")
        except RuntimeError:
            logger.exception("outside")
        assert "Traceback" in stream.getvalue()  # the formatter is given back
    finally:
        logger.removeHandler(handler)
