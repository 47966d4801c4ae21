"""Every refusal reason of the core reaches its company's row, and nothing of that company is posted; backfill
posts only what is missing; the CLI's exit status follows the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmbrs_visma.results import Status, StatusRow

pytestmark = pytest.mark.slow


def _line(account: str, value: str, side: str, cost_center: str = "", cost_unit: str = "") -> str:
    dim2 = f"<dim2>{cost_center}</dim2>" if cost_center else "<dim2/>"
    dim3 = f"<dim3>{cost_unit}</dim3>" if cost_unit else "<dim3/>"
    return (
        f"<line><dim1>{account}</dim1>{dim2}{dim3}<value>{value}</value>"
        f"<debitcredit>{side}</debitcredit><description>test</description></line>"
    )


def _journal(path: Path, transactions: list[tuple[str, str, list[str]]]) -> Path:
    """transactions: (date, period as YYYY/P, lines)."""
    body = "".join(
        f"<transaction><header><date>{date}</date><period>{period}</period></header><lines>{''.join(lines)}</lines>"
        "</transaction>"
        for date, period, lines in transactions
    )
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?><transactions>{body}</transactions>', encoding="utf-8")
    return path


def _post_file(path: Path, company: int, period: str) -> list[StatusRow]:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    return pass_rows(
        post_payroll_journals(period=period, companies=[company], journal_file=str(path), return_state=True)
    )


def test_every_refusal_reason_reaches_its_company_and_nothing_is_posted(
    sandboxes: object, ledger: object, workspace: Path
) -> None:
    from nmbrs_visma.blocks.mapping import AdministrationMappingBlock
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals
    from nmbrs_visma.journals.models import DimensionSetting

    # company 1001 (no dimensions): unknown + inactive account, a cost center it has not activated, a closed,
    # an inactive and a missing period, and an unbalanced period, all in one file
    bad_1001 = _journal(
        workspace / "bad-1001.xml",
        [
            ("2025-03-31", "2025/3", [_line("4000", "10.00", "debit"), _line("1700", "10.00", "credit")]),
            ("2026-12-31", "2026/12", [_line("4000", "10.00", "debit"), _line("1700", "10.00", "credit")]),
            (
                "2027-01-31",
                "2027/1",
                [
                    _line("9999", "5.00", "debit"),
                    _line("4999", "5.00", "debit"),
                    _line("4000", "7.00", "debit", cost_center="100"),
                    _line("1700", "10.00", "credit"),
                ],
            ),
        ],
    )
    rows = _post_file(bad_1001, 1001, "2027-01")
    (row,) = rows
    assert row.status is Status.REFUSED
    assert {
        "unknown_account",
        "inactive_account",
        "dimension_not_activated",
        "period_closed",
        "period_inactive",
        "period_missing",
        "not_balanced",
    } <= set(row.codes), row
    assert "9999" in row.reason and "4999" in row.reason and "202503" in row.reason

    # company 1002 (dimensions by description): an unknown and an inactive department, and a cost unit
    # description Visma.net does not know
    block = AdministrationMappingBlock.load("company-1002", _sync=True)
    original = block.cost_unit
    block.cost_unit = DimensionSetting(enabled=True, description="Projekt")
    block.save("company-1002", overwrite=True, _sync=True)
    bad_1002 = _journal(
        workspace / "bad-1002.xml",
        [
            (
                "2026-03-31",
                "2026/3",
                [
                    _line("4000", "5.00", "debit", cost_center="700"),
                    _line("4000", "5.00", "debit", cost_center="900"),
                    _line("1700", "10.00", "credit"),
                ],
            )
        ],
    )
    try:
        (row,) = _post_file(bad_1002, 1002, "2026-03")
    finally:
        block.cost_unit = original
        block.save("company-1002", overwrite=True, _sync=True)
    assert row.status is Status.REFUSED
    assert {"unknown_segment_value", "inactive_segment_value", "segment_not_found"} <= set(row.codes), row
    assert "Projekt" in row.reason

    # the demo's own refusals, and a company nobody mapped
    rows = pass_rows(post_payroll_journals(period="2026-03", companies=[1004, 1005, 2001, 4242], return_state=True))
    codes = {row.company: set(row.codes) for row in rows if row.status is Status.REFUSED}
    assert [(row.status, row.codes) for row in rows if row.company == 1004] == [(Status.SKIPPED, ("test_company",))]
    assert codes == {
        2001: {"debtor_blocked"},
        4242: {"unmapped_company"},
    }
    assert all(row.reason for row in rows)
    assert [row.status for row in rows if row.company == 1005] == [Status.WAITING]  # unlocked: not refused
    assert ledger(sandboxes) == []  # type: ignore[operator]


def test_a_good_journal_file_is_posted_once(sandboxes: object, ledger: object, workspace: Path) -> None:
    good = _journal(
        workspace / "good.xml",
        [("2026-04-30", "2026/4", [_line("4000", "1234.56", "debit"), _line("1700", "1234.56", "credit")])],
    )
    (row,) = _post_file(good, 1001, "2026-04")
    assert row.status is Status.SENT and str(row.debit) == "1234.56"
    (row_again,) = _post_file(good, 1001, "2026-04")
    assert row_again.status is Status.ALREADY_SENT and row_again.batch_number == row.batch_number
    assert len(ledger(sandboxes, "1000001")) == 1  # type: ignore[operator]


def test_backfill_posts_only_what_is_missing(sandboxes: object, ledger: object) -> None:
    from nmbrs_visma.flows.backfill import backfill_correction_periods
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    first = pass_rows(post_payroll_journals(period="2026-02", companies=[1001], return_state=True))
    assert [row.status for row in first] == [Status.SENT]
    rows = pass_rows(backfill_correction_periods(start="2026-01", end="2026-03", companies=[1001], return_state=True))
    by_period = {row.period: row.status for row in rows}
    assert by_period == {"202601": Status.SENT, "202602": Status.ALREADY_SENT, "202603": Status.SENT}
    assert len(ledger(sandboxes, "1000001")) == 3  # type: ignore[operator]

    # each run has the status artifact of its administration and payroll period, its batch number shown
    from prefect.artifacts import Artifact

    from nmbrs_visma.tasks.report import status_artifact_key

    (administration,) = {row.administration for row in rows}
    assert sorted(row.run_period for row in rows) == ["2026-01", "2026-02", "2026-03"]
    for row in rows:
        key = status_artifact_key(administration, row.run_period, dry_run=False)
        assert key == f"status-{administration.replace('/', '-').lower()}-{row.run_period}"
        artifact = Artifact.get(key)
        assert artifact is not None and isinstance(artifact.data, str)
        assert artifact.flow_run_id is not None  # published from the background thread, yet the run's own
        assert row.batch_number and row.batch_number in artifact.data and row.period in artifact.data


def test_cli_post_exits_non_zero_when_refused_and_status_prints_the_record(
    sandboxes: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from nmbrs_visma.commands import run_post, run_status

    assert run_post(period="2026-03", companies=[1001], journal_file=None, dry_run=False) == 0
    assert run_post(period="2026-03", companies=[1004], journal_file=None, dry_run=False) == 0  # skipped: no alarm
    assert "skipped" in capsys.readouterr().out
    assert run_post(period="2026-03", companies=[2001], journal_file=None, dry_run=False) == 1  # a blocked debtor
    out = capsys.readouterr().out
    assert "refused" in out and "blocked" in out
    assert run_status(period="2026-03", companies=None) == 1  # 2001 refused above: status shows it
    assert "1000001/1/L" in capsys.readouterr().out
