"""Every dialect of Nmbrs journal XML is read to the cent; everything else is refused, saying where."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from nmbrs_visma.journals.frame import COLUMNS, validate_lines
from nmbrs_visma.journals.nmbrs_xml import JournalXmlError, parse_journal_xml

from .builders import MARCH_WITH_CORRECTION, journal_xml, line_xml


def one(line: str, *, date: str = "20260331", period: str = "3/2026", **kwargs) -> pd.DataFrame:
    return parse_journal_xml(journal_xml([(date, period, [line])], **kwargs), source="test.xml")


def refused(data: bytes) -> JournalXmlError:
    with pytest.raises(JournalXmlError) as error:
        parse_journal_xml(data, source="march.xml")
    assert str(error.value).startswith("march.xml")
    return error.value


def test_parses_the_demo_run_into_the_schema() -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION, source="march.xml")
    validate_lines(lines)
    assert list(lines.columns) == list(COLUMNS)
    assert {name: str(lines[name].dtype) for name in COLUMNS} == COLUMNS
    assert len(lines) == 8
    assert lines["transaction"].tolist() == [1] * 6 + [2] * 2
    assert lines["line"].tolist() == [1, 2, 3, 4, 5, 6, 1, 2]
    assert lines["period_id"].tolist() == ["202603"] * 6 + ["202601"] * 2
    assert lines["debit_cents"].tolist() == [250000, 150000, 80000, 0, 0, 0, -10050, 0]
    assert lines["credit_cents"].tolist() == [0, 0, 0, 120000, 80000, 280000, 0, -10050]
    assert lines["cost_center"].tolist()[:4] == ["100", "200", "100", ""]
    assert lines["cost_unit"].tolist()[:4] == ["1", "2", "1", ""]
    assert lines["description"].iloc[0] == "Bruto loon"
    assert (lines["date"] == pd.Timestamp("2026-03-25")).all()


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("20260331", dt.date(2026, 3, 31)),
        ("2026-03-01", dt.date(2026, 3, 1)),
        ("2026-03-31T08:00:00", dt.date(2026, 3, 31)),
    ],
)
def test_date_variants(date: str, expected: dt.date) -> None:
    assert one(line_xml("4000", "1"), date=date)["date"].iloc[0].date() == expected


@pytest.mark.parametrize(
    ("period", "expected"),
    [("3/2026", "202603"), ("03/2026", "202603"), ("2026/3", "202603"), ("2026/03", "202603"), ("13/2026", "202613")],
)
def test_period_variants(period: str, expected: str) -> None:
    assert one(line_xml("4000", "1"), period=period)["period_id"].iloc[0] == expected


@pytest.mark.parametrize(
    ("value", "cents"),
    [("1234,56", 123456), ("1234.56", 123456), ("-12,5", -1250), ("1.234,56", 123456), ("0", 0), (" 7 ", 700)],
)
def test_amount_variants(value: str, cents: int) -> None:
    lines = one(line_xml("4000", value, "credit"))
    assert lines["credit_cents"].iloc[0] == cents
    assert lines["debit_cents"].iloc[0] == 0


def test_negative_value_stays_on_its_side() -> None:
    lines = one(line_xml("4000", "-10,00", "debit"))
    assert (lines["debit_cents"].iloc[0], lines["credit_cents"].iloc[0]) == (-1000, 0)


def test_missing_dim2_and_dim3_are_empty() -> None:
    lines = one(line_xml("1700", "1", "credit"))
    assert (lines["cost_center"].iloc[0], lines["cost_unit"].iloc[0]) == ("", "")


def test_side_is_case_insensitive() -> None:
    assert one(line_xml("4000", "1", "Credit"))["credit_cents"].iloc[0] == 100


def test_utf16_declaration_on_utf8_bytes() -> None:
    data = journal_xml(
        [("20260331", "3/2026", [line_xml("4000", "1", description="Vakantiegeld é")])],
        declaration='<?xml version="1.0" encoding="utf-16"?>',
    )
    assert parse_journal_xml(data)["description"].iloc[0] == "Vakantiegeld é"


def test_real_utf16_with_bom() -> None:
    text = journal_xml(
        [("20260331", "3/2026", [line_xml("4000", "1", description="Überstunden")])],
        declaration='<?xml version="1.0" encoding="UTF-16"?>',
    ).decode()
    assert parse_journal_xml(text.encode("utf-16"))["description"].iloc[0] == "Überstunden"
    assert parse_journal_xml(text.encode("utf-16-le"))["description"].iloc[0] == "Überstunden"


def test_utf8_bom_and_no_declaration() -> None:
    data = b"\xef\xbb\xbf" + journal_xml([("20260331", "3/2026", [line_xml("4000", "1")])], declaration="")
    assert len(parse_journal_xml(data)) == 1


def test_declared_latin1_is_honoured() -> None:
    data = (
        journal_xml(
            [("20260331", "3/2026", [line_xml("4000", "1", description="caf\xe9")])],
            declaration='<?xml version="1.0" encoding="ISO-8859-1"?>',
        )
        .decode()
        .encode("latin-1")
    )
    assert parse_journal_xml(data)["description"].iloc[0] == "café"


LINE = line_xml("4000", "1")
A, V, D = "<dim1>4000</dim1>", "<value>1</value>", "<debitcredit>debit</debitcredit>"


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        (f"<line>{V}{D}</line>", "dim1", "missing ledger account"),
        (f"<line>{A}{D}</line>", "value", "not an amount"),
        (f"<line>{A}<value>1,234</value>{D}</line>", "value", "ambiguous"),
        (f"<line>{A}<value>1,005</value>{D}</line>", "value", "ambiguous"),
        (f"<line>{A}<value>1,0051</value>{D}</line>", "value", "decimals"),
        (f"<line>{A}<value>12 EUR</value>{D}</line>", "value", "amount"),
        (f"<line>{A}{V}</line>", "debitcredit", "'debit' or 'credit'"),
        (f"<line>{A}{V}<debitcredit>D</debitcredit></line>", "debitcredit", "'d'"),
        (f"<line>{A}<dim4>x</dim4>{V}{D}</line>", "dim4", "unexpected"),
        (f"<line>{A}{V}{V}{D}</line>", "value", "twice"),
        (f"<line>{A}<value><b>1</b></value>{D}</line>", "value", "holds elements"),
        (f'<line type="total">{A}{V}{D}</line>', "type", "total"),
    ],
)
def test_bad_line_is_refused_naming_transaction_line_and_field(line: str, field: str, reason: str) -> None:
    ok = line_xml("1700", "1", "credit")
    error = refused(journal_xml([("20260331", "3/2026", [ok]), ("20260331", "3/2026", [ok, line])]))
    assert (error.transaction, error.line, error.field) == (2, 2, field)
    assert f"march.xml, transaction 2, line 2, field {field}:" in str(error)
    assert reason in str(error)


@pytest.mark.parametrize(
    ("date", "period", "field"),
    [
        ("31-03-2026", "3/2026", "date"),
        ("20260231", "3/2026", "date"),
        ("", "3/2026", "date"),
        ("2026033", "3/2026", "date"),
        ("20260331", "2026-03", "period"),
        ("20260331", "0/2026", "period"),
        ("20260331", "54/2026", "period"),
        ("20260331", "3/26", "period"),
        ("20260331", "", "period"),
    ],
)
def test_bad_header_is_refused(date: str, period: str, field: str) -> None:
    error = refused(journal_xml([(date, period, [line_xml("4000", "1")])]))
    assert (error.transaction, error.field) == (1, field)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b"<transactions>", "not well-formed"),
        (MARCH_WITH_CORRECTION[:-40], "truncated"),
        (b"<transactions><transaction></transactions>", "not well-formed"),
        (b"not xml at all", "not well-formed"),
        (b"<journal/>", "root element is <journal>"),
        (b"<transactions/>", "no <transaction>"),
        (b"<transactions><batch/></transactions>", "unexpected element <batch>"),
        (f"<transactions><transaction><lines>{LINE}</lines></transaction></transactions>".encode(), "missing <header>"),
        (
            b"<transactions><transaction><header><date>20260331</date><period>3/2026</period></header>"
            b"</transaction></transactions>",
            "no lines",
        ),
        (
            b"<transactions><transaction><header><date>20260331</date><period>3/2026</period></header>"
            b"<lines><row/></lines></transaction></transactions>",
            "unexpected element <row>",
        ),
        (
            b"<transactions><transaction><header><date>20260331</date><period>3/2026</period><office>x</office>"
            b"</header><lines/></transaction></transactions>",
            "unexpected element <office>",
        ),
    ],
)
def test_malformed_documents_are_refused(data: bytes, reason: str) -> None:
    assert reason in str(refused(data))


def test_truncated_document_names_the_transaction_it_broke_in() -> None:
    error = refused(MARCH_WITH_CORRECTION[:-60])
    assert error.transaction == 2


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<transactions><transaction><header><date>20260331</date><period>3/2026</period></header>
<lines><line><dim1>4000</dim1><value>1</value><debitcredit>debit</debitcredit><description>&lol4;</description>
</line></lines></transaction></transactions>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<transactions><transaction><header><date>20260331</date><period>3/2026</period></header>
<lines><line><dim1>&secret;</dim1><value>1</value><debitcredit>debit</debitcredit></line></lines>
</transaction></transactions>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE transactions SYSTEM "http://example.invalid/journal.dtd">
<transactions/>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_entities_and_dtds_are_refused_not_expanded(data: bytes) -> None:
    error = refused(data)
    assert "refused" in str(error)
    assert "lol" not in str(error) and "root:" not in str(error)


def test_an_undeclared_entity_is_refused_on_either_parser() -> None:
    """Without `<!` no entity can be declared: a reference to one is not well-formed, on the C parser too."""
    data = journal_xml([("20260331", "3/2026", [line_xml("4000", "1")])]).replace(b"<dim1>4000", b"<dim1>&secret;")
    assert b"<!" not in data
    assert "not well-formed" in str(refused(data))
    assert "not well-formed" in str(refused(data.replace(b"<transactions>", b"<!-- a comment --><transactions>")))


@pytest.mark.parametrize(
    "data",
    [
        MARCH_WITH_CORRECTION,
        journal_xml(
            [("2026-03-31", "2026/3", [line_xml("4000", "-1.234,56", "credit", cost_center="12", cost_unit="7")])]
        ),
        b"<?xml version='1.0' encoding='UTF-16'?>" + MARCH_WITH_CORRECTION.split(b"?>", 1)[-1],
    ],
    ids=["demo", "dialects", "utf16-declared"],
)
def test_both_parsers_read_a_document_alike(data: bytes) -> None:
    """A document with no `<!` goes to the C parser, one with a comment through defusedxml's: the same frame."""
    commented = data.replace(b"<transactions>", b"<!-- exported by Nmbrs --><transactions>", 1)
    assert b"<!" not in data and commented != data
    pd.testing.assert_frame_equal(parse_journal_xml(data), parse_journal_xml(commented))


def test_namespaced_document_is_read_by_local_names() -> None:
    data = journal_xml([("20260331", "3/2026", [line_xml("4000", "1")])]).replace(
        b"<transactions>", b'<transactions xmlns="urn:nmbrs:journal">'
    )
    assert parse_journal_xml(data)["account"].tolist() == ["4000"]


def test_large_single_transaction_streams_in_linear_time() -> None:
    lines = [line_xml("4000", f"{i},{i % 100:02d}", "debit", "100", "1", "Bruto") for i in range(20_000)]
    frame = parse_journal_xml(journal_xml([("20260331", "3/2026", lines)]))
    assert len(frame) == 20_000
    assert frame["line"].iloc[-1] == 20_000
    assert frame["debit_cents"].sum() == sum(i * 100 + i % 100 for i in range(20_000))
