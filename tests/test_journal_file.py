"""The journal-file source: an Nmbrs export given by hand, read by the same parser, its run derived."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmbrs_visma.journal_file import JournalFileError, RunInfo, file_run_id, read_journal_file
from nmbrs_visma.journals.nmbrs_xml import JournalXmlError
from nmbrs_visma.sandbox.demo_data import DEMO_PERIOD, DEMO_YEAR
from nmbrs_visma.sandbox.nmbrs import JOURNAL_KINDS, NmbrsWorld
from tests.support import frame_totals


def export(world: NmbrsWorld, tmp_path: Path, number: int, period: int, kind: str = "journals") -> Path:
    path = tmp_path / f"journal-{number}-{period}-{kind}.xml"
    path.write_bytes(world.journal_document(world.run_for_period(number, DEMO_YEAR, period), kind))  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("number", [1001, 1002, 1003, 2001])  # ISO, Dutch, corrections, mislabelled UTF-16
def test_every_dialect_reads_to_the_generated_totals(world, tmp_path, number) -> None:
    for kind in JOURNAL_KINDS:
        journal = read_journal_file(export(world, tmp_path, number, DEMO_PERIOD, kind), company_number=number)
        assert frame_totals(journal.lines) == world.expected_lines(number, DEMO_YEAR, DEMO_PERIOD, kind)  # type: ignore[arg-type]


def test_the_run_is_derived_from_the_latest_period_and_is_stable(world, tmp_path) -> None:
    path = export(world, tmp_path, 1003, DEMO_PERIOD)
    first = read_journal_file(path, company_number=1003)
    again = read_journal_file(path, company_number=1003)
    run = first.run
    assert (run.year, run.period_start, run.period_end, run.run_number) == (DEMO_YEAR, DEMO_PERIOD, DEMO_PERIOD, 1)
    assert run.company_number == 1003 and run.locked
    assert run.run_id == again.run.run_id == file_run_id(1003, DEMO_YEAR, DEMO_PERIOD, 1)
    assert sorted(first.lines["period_id"].unique()) == ["202601", "202602", "202603"]
    assert "journal-1003-3-journals.xml" in first.source


def test_given_run_info_wins(world, tmp_path) -> None:
    info = RunInfo(run_number=3, year=DEMO_YEAR, period=4, run_id="0b7a1c52-3f58-4f2e-9d55-6c7c1a2b3c4d")
    run = read_journal_file(export(world, tmp_path, 1001, DEMO_PERIOD), company_number=1001, info=info).run
    assert (run.run_number, run.period_end, run.run_id) == (3, 4, info.run_id)
    assert run.reference == "NM2604R3"


def test_a_file_later_than_its_run_is_refused(world, tmp_path) -> None:
    path = export(world, tmp_path, 1001, DEMO_PERIOD)
    with pytest.raises(JournalFileError, match=r"202603.*later than.*202602"):
        read_journal_file(path, company_number=1001, info=RunInfo(year=DEMO_YEAR, period=2))
    with pytest.raises(JournalFileError, match="both"):
        read_journal_file(path, company_number=1001, info=RunInfo(year=DEMO_YEAR))


def test_unreadable_files_name_the_file(tmp_path) -> None:
    with pytest.raises(JournalFileError, match=r"missing\.xml.*cannot read"):
        read_journal_file(tmp_path / "missing.xml", company_number=1001)
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<transactions><transaction><header><date>20260331</date>")
    with pytest.raises(JournalXmlError, match=r"broken\.xml"):
        read_journal_file(broken, company_number=1001)
    big = tmp_path / "big.xml"
    big.write_bytes(b" " * 2048)
    with pytest.raises(JournalFileError, match="more than"):
        read_journal_file(big, company_number=1001, max_bytes=1024)
