"""Bad input: journal documents that are malformed, truncated, empty, huge (50 MB) or hostile (entity
expansion, external entities); an unbalanced run; unknown accounts and segment values; a company mapped twice.
Each is refused for its company with a clear reason, nothing of that company is posted, the others are."""

from __future__ import annotations

import dataclasses

import pytest

from nmbrs_visma.results import Status
from nmbrs_visma.sandbox.nmbrs.ledger import render_xml

from .support import DEMO_PERIOD, DEMO_YEAR, assert_ledger, assert_rows_match_ledger, peak_rss, post

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MB = 1024 * 1024
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<transactions><transaction><header><date>2026-03-31</date><period>2026/3</period></header><lines>
<line><dim1>4000</dim1><value>1.00</value><debitcredit>debit</debitcredit><description>&lol9;</description></line>
</lines></transaction></transactions>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE transactions [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<transactions><transaction><header><date>2026-03-31</date><period>2026/3</period></header><lines>
<line><dim1>4000</dim1><value>1.00</value><debitcredit>debit</debitcredit><description>&secret;</description></line>
</lines></transaction></transactions>
"""


def demo_document(sandboxes, number: int, kind: str = "journals") -> bytes:
    nmbrs = sandboxes.nmbrs_world
    return nmbrs.journal_document(nmbrs.run_for_period(number, DEMO_YEAR, DEMO_PERIOD), kind)


def huge_document(size: int = 50 * MB) -> bytes:
    """A journal of ~50 MB in one transaction whose very last line carries an amount no one can read."""
    line = (
        b"<line><dim1>4000</dim1><dim2/><dim3/><value>12.34</value><debitcredit>debit</debitcredit>"
        b"<description>Bruto loon medewerker</description></line>\n"
    )
    head = b'<?xml version="1.0" encoding="utf-8"?>\n<transactions><transaction><header><date>2026-03-31</date>'
    head += b"<period>2026/3</period></header><lines>\n"
    bad = b"<line><dim1>1700</dim1><value>12,34,56</value><debitcredit>credit</debitcredit></line>\n"
    tail = b"</lines></transaction></transactions>\n"
    return head + line * (size // len(line)) + bad + tail


def refused_alone(rows, number: int, *codes: str):
    """The company's single row is refused with the codes; returns it."""
    (row,) = [r for r in rows if r.company == number]
    assert row.status is Status.REFUSED, (row.status, row.reason)
    assert set(codes) <= set(row.codes), (row.codes, row.reason)
    assert f"company {number}" in row.reason, row.reason
    return row


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("malformed", "not well-formed"),
        ("truncated", "truncated"),
        ("billion laughs", "refused: the document declares a DTD"),
        ("external entity", "refused: the document declares a DTD"),
    ],
)
def test_a_broken_or_hostile_journal_is_refused_for_its_company_only(sandboxes, name: str, reason: str) -> None:
    document = {
        "malformed": b"<transactions><transaction><header><date>2026-03-31</date><period>2026/3</period></header>"
        b"<lines><line>"
        b"<dim1>4000</dim2></line></lines></transaction></transactions>",
        "truncated": demo_document(sandboxes, 1001)[: len(demo_document(sandboxes, 1001)) // 2],
        "billion laughs": BILLION_LAUGHS,
        "external entity": EXTERNAL_ENTITY,
    }[name]
    sandboxes.nmbrs_world.documents[1001] = document
    rows = post(companies=[1001, 1002])

    row = refused_alone(rows, 1001, "invalid_journal")
    assert reason in row.reason, row.reason
    assert "root:" not in row.reason  # no file content leaked into the message
    assert [r.status for r in rows if r.company == 1002] == [Status.SENT]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1002]))


def test_an_empty_journal_is_not_posted_and_says_so(sandboxes) -> None:
    sandboxes.nmbrs_world.documents[1001] = b""
    rows = post(companies=[1001, 1002])
    (row,) = [r for r in rows if r.company == 1001]
    assert row.status in (Status.REFUSED, Status.FAILED), row
    assert "company 1001" in row.reason and ("empty" in row.reason or "without a document" in row.reason), row
    assert [r.status for r in rows if r.company == 1002] == [Status.SENT]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1002]))


def test_a_50_mb_journal_streams_in_bounded_memory_and_is_refused_naming_the_line(sandboxes) -> None:
    document = huge_document()
    lines = document.count(b"<line>")
    sandboxes.nmbrs_world.documents[1001] = document
    with peak_rss() as growth:
        rows = post(companies=[1001, 1002])
    row = refused_alone(rows, 1001, "invalid_journal")
    assert f"line {lines}" in row.reason and "field value" in row.reason, row.reason
    # the document is held a few times over (emulator, its request log, the HTTP answer), never as a tree
    assert growth() < 8 * len(document), f"peak RSS grew {growth() / MB:.0f} MB for a {len(document) / MB:.0f} MB doc"
    assert [r.status for r in rows if r.company == 1002] == [Status.SENT]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1002]))


def test_an_unbalanced_run_is_refused_and_nothing_of_it_is_posted(sandboxes) -> None:
    nmbrs = sandboxes.nmbrs_world
    run = nmbrs.run_for_period(1003, DEMO_YEAR, DEMO_PERIOD)  # three periods: January, February, March
    transactions = list(nmbrs.transactions(run, "journals"))
    february = transactions[1]
    first = dataclasses.replace(february.lines[0], cents=february.lines[0].cents + 1)
    transactions[1] = dataclasses.replace(february, lines=(first, *february.lines[1:]))
    nmbrs.documents[1003] = render_xml(transactions)
    rows = post(companies=[1001, 1003])

    row = refused_alone(rows, 1003, "not_balanced")
    assert "difference 0.01" in row.reason and "202602" in row.reason, row.reason
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1001]))  # not January nor March of 1003 either


def test_unknown_accounts_and_segment_values_are_refused_naming_each(sandboxes) -> None:
    nmbrs = sandboxes.nmbrs_world
    document = demo_document(sandboxes, 1002, "journalscostcenterunit")
    text = document.decode("utf-16")
    assert "<dim1>4100</dim1><dim2>100</dim2>" in text
    text = text.replace("<dim1>4100</dim1><dim2>100</dim2>", "<dim1>4101</dim1><dim2>777</dim2>", 1)
    nmbrs.documents[1002] = text.encode("utf-16")
    rows = post(companies=[1001, 1002])

    row = refused_alone(rows, 1002, "unknown_account", "unknown_segment_value")
    assert "4101" in row.reason and "777" in row.reason, row.reason
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1001]))


def test_a_company_mapped_twice_is_refused_naming_both_mappings(sandboxes) -> None:
    from nmbrs_visma.blocks.mapping import AdministrationMappingBlock, mapping_block_name

    original = AdministrationMappingBlock.load(mapping_block_name(1001), _sync=True)
    twin = original.to_mapping().model_copy(update={"branch": "2"})
    copy = AdministrationMappingBlock.from_mapping(twin, nmbrs_account=original.nmbrs_account)
    copy.save("company-1001-copy", overwrite=True, _sync=True)
    try:
        rows = post(companies=[1001, 1002, 1003])
    finally:  # Prefect's blocks live for the whole session: leave no second mapping to the next test
        AdministrationMappingBlock.delete("company-1001-copy", _sync=True)

    row = refused_alone(rows, 1001, "duplicate_mapping")
    assert "company-1001" in row.reason and "company-1001-copy" in row.reason, row.reason
    assert {r.status for r in rows if r.company != 1001} == {Status.SENT}
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1002, 1003]))
