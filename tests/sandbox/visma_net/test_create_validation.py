"""Every create the published JournalTransactionUpdateDto schema refuses is refused by the emulator, over HTTP,
in Visma.net's error body; and the `require_complete_subaccounts` switch."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmbrs_visma.sandbox.visma_net.journal import HEADER_PROPERTIES, LINE_PROPERTIES, SEGMENT_PROPERTIES
from tests.support import TENANT, Raw, Sandbox, dumps, journal, subaccount

Body = dict[str, Any]


def _refused(sandbox: Sandbox, body: Body | bytes, code: str = "InvalidFormat") -> str:
    """POST it, assert a 400 in the ERP's error shape that booked nothing; the message."""
    booked = len(sandbox.world.transactions(TENANT))
    answer = sandbox.create(body if isinstance(body, bytes) else dumps(body))
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert set(error) == {
        "ExceptionType",
        "ExceptionMessage",
        "ExceptionFaultCode",
        "ExceptionMessageID",
        "ExceptionDetails",
    }
    assert error["ExceptionFaultCode"] == code, error
    assert len(sandbox.world.transactions(TENANT)) == booked
    return error["ExceptionMessage"]


def _line(body: Body, number: int = 1) -> Body:
    return body["journalTransactionLines"][number - 1]


def _set(path: str, value: Any) -> Callable[[Body], None]:
    """A change to the body: `path` is `header.<name>`, `line.<name>` (line 1) or `segment.<name>` (its first)."""
    where, name = path.split(".")

    def change(body: Body) -> None:
        target = {"header": body, "line": _line(body), "segment": _line(body)["subaccount"][0]}[where]
        target[name] = value

    return change


WRONG_TYPES: dict[str, tuple[Callable[[Body], None], str]] = {
    "string as a number": (_set("header.description", {"value": 5}), "description: not a string"),
    "string as null": (_set("header.ledger", {"value": None}), "ledger: not a string"),
    "boolean as a string": (_set("header.hold", {"value": "true"}), "hold: not a boolean"),
    "boolean as a number": (_set("header.autoReversing", {"value": 1}), "autoReversing: not a boolean"),
    "date-time as a number": (
        _set("header.transactionDate", {"value": 20260328}),
        "transactionDate: not a date-time string",
    ),
    "header number as a string": (_set("header.exchangeRate", {"value": "1.0"}), "exchangeRate: not a number"),
    "header number as a boolean": (
        _set("header.controlTotalInCurrency", {"value": True}),
        "controlTotalInCurrency: not a number",
    ),
    "line string as a number": (_set("line.accountNumber", {"value": 4000}), "Line 1: accountNumber: not a string"),
    "line number as a string": (_set("line.quantity", {"value": "2"}), "Line 1: quantity: not a number"),
    "int32 with a fraction": (_set("line.lineNumber", {"value": 1.5}), "Line 1: lineNumber: not an integer"),
    "int32 as a string": (_set("line.lineNumber", {"value": "1"}), "Line 1: lineNumber: not an integer"),
    "int32 out of range": (
        _set("line.lineNumber", {"value": 2**31}),
        "Line 1: lineNumber: 2147483648 is outside the int32 range",
    ),
    "decimal out of range": (
        _set("header.exchangeRate", {"value": Raw("1e30")}),
        "exchangeRate: 1E+30 is outside the range of a decimal",
    ),
    "segment id as a string": (_set("segment.segmentId", "1"), "Line 1: segmentId: not an integer"),
    "segment value as a number": (_set("segment.segmentValue", 100), "Line 1: segmentValue: not a string"),
    "subaccount as an object": (_set("line.subaccount", {"segmentId": 1}), "Line 1: subaccount: not an array"),
    "subaccount as null": (_set("line.subaccount", None), "Line 1: subaccount: not an array"),
    "segment as a string": (
        _set("line.subaccount", ["1-0100"]),
        "Line 1: subaccount: a segment must be a SegmentUpdateDto object",
    ),
    "lines as an object": (_set("header.journalTransactionLines", {}), "journalTransactionLines: not an array"),
    "line as a string": (
        lambda body: body["journalTransactionLines"].append("4000"),
        "Line 4: must be a JournalTransactionLineUpdateDto object",
    ),
}

NOT_WRAPPED: dict[str, tuple[Callable[[Body], None], str]] = {
    "header string": (_set("header.ledger", "L"), 'ledger: expected an object {"value": ...}'),
    "header boolean": (_set("header.hold", False), 'hold: expected an object {"value": ...}'),
    "header null": (_set("header.branch", None), 'branch: expected an object {"value": ...}'),
    "line string": (_set("line.accountNumber", "4000"), 'Line 1: accountNumber: expected an object {"value": ...}'),
    "line amount": (
        _set("line.debitAmountInCurrency", Raw("1.00")),
        'Line 1: debitAmountInCurrency: expected an object {"value": ...}',
    ),
    "wrapper with another key": (
        _set("line.referenceNumber", {"value": "R1", "text": "R1"}),
        'Line 1: referenceNumber: expected an object {"value": ...}',
    ),
    "plain property wrapped": (
        _set("line.operation", {"value": "Insert"}),
        'Line 1: operation: {"value": "Insert"} is not one of Insert, Update, Delete',
    ),
}

ENUMS: dict[str, tuple[Callable[[Body], None], str]] = {
    "unknown operation": (
        _set("line.operation", "Upsert"),
        'Line 1: operation: "Upsert" is not one of Insert, Update, Delete',
    ),
    "operation in lower case": (
        _set("line.operation", "insert"),
        'Line 1: operation: "insert" is not one of Insert, Update, Delete',
    ),
    "operation as null": (_set("line.operation", None), "Line 1: operation: null is not one of Insert, Update, Delete"),
}


@pytest.mark.parametrize("case", [*WRONG_TYPES, *NOT_WRAPPED, *ENUMS])
def test_a_create_the_schema_refuses_is_refused(sandbox: Sandbox, case: str) -> None:
    change, message = {**WRONG_TYPES, **NOT_WRAPPED, **ENUMS}[case]
    body = copy.deepcopy(journal("202606"))
    change(body)
    assert _refused(sandbox, body) == message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_number_json_does_not_have_is_refused(sandbox: Sandbox, constant: str) -> None:
    body = journal("202606")
    body["exchangeRate"] = {"value": Raw(constant)}  # Python's json would read it
    assert _refused(sandbox, body) == "The request body is not valid JSON"


def test_what_the_schema_allows_is_booked(sandbox: Sandbox) -> None:
    """An integral number is an integer to JSON Schema; an empty DtoValue gives no value."""
    body = copy.deepcopy(journal("202606"))
    _line(body)["lineNumber"] = {"value": Raw("1.0")}
    body["description"] = {}
    for line in body["journalTransactionLines"]:
        line["operation"] = "Insert"
    answer = sandbox.create(dumps(body))
    assert answer.status_code == 201, answer.text
    assert sandbox.world.transactions(TENANT)[-1].description == ""


def test_a_large_exact_amount_is_booked_and_read_back_exactly(sandbox: Sandbox) -> None:
    """Amounts past a double's 15 digits are rendered as exact literals, not refused at read time (no 500)."""
    amount = "12345678901234567.89"
    body = journal("202606", lines=[("4000", amount, "0", subaccount()), ("1700", "0", amount, subaccount())])
    created = sandbox.create(dumps(body))
    assert created.status_code == 201, created.text
    read = sandbox.request("GET", created.headers["Location"])
    assert read.status_code == 200 and f'"debitTotal":{amount}'.encode() in read.content


# -- require_complete_subaccounts --

PARTIAL = [("4000", "10.00", "0", [(1, "0100"), (2, "001")]), ("1700", "0", "10.00", [(2, "002")])]


def test_an_incomplete_subaccount_is_booked_while_the_switch_is_off(sandbox: Sandbox) -> None:
    assert sandbox.world.require_complete_subaccounts is True  # the default: strict, as in every test
    sandbox.world.require_complete_subaccounts = False
    assert sandbox.create(dumps(journal("202606", lines=PARTIAL))).status_code == 201


def test_an_incomplete_subaccount_is_refused_naming_the_line_and_segment(sandbox: Sandbox) -> None:
    sandbox.world.require_complete_subaccounts = True
    message = _refused(sandbox, journal("202606", lines=PARTIAL), "SubaccountIncomplete")
    assert message == "Line 2: subaccount has no value for segment 1 of dimension SUBACCOUNT"
    none = [PARTIAL[0], ("1700", "0", "10.00", [])]
    message = _refused(sandbox, journal("202606", lines=none), "SubaccountIncomplete")
    assert message == "Line 2: subaccount has no value for segment 1, 2 of dimension SUBACCOUNT"
    complete = [PARTIAL[0], ("1700", "0", "10.00", [(1, "0200"), (2, "002")])]
    assert sandbox.create(dumps(journal("202606", lines=complete))).status_code == 201


def test_a_tenants_own_switch_wins_over_the_worlds(sandbox: Sandbox) -> None:
    tenant = sandbox.world.tenants[TENANT]
    try:
        tenant.require_complete_subaccounts = True
        _refused(sandbox, journal("202606", lines=PARTIAL), "SubaccountIncomplete")
        sandbox.world.require_complete_subaccounts = True
        tenant.require_complete_subaccounts = False
        assert sandbox.create(dumps(journal("202606", lines=PARTIAL))).status_code == 201
    finally:
        tenant.require_complete_subaccounts = None


# -- any one value changed: a 201 or a refusal in Visma.net's shape, never a 5xx --

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: Raw(str(d)))
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["value", "x"]), children, max_size=2)
    ),
    max_leaves=6,
)
TARGETS = [("header", name) for name in sorted(HEADER_PROPERTIES)] + [
    ("line", name) for name in sorted(LINE_PROPERTIES)
]
TARGETS += [("segment", name) for name in sorted(SEGMENT_PROPERTIES)]


@settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(TARGETS), wrap=st.booleans(), value=JSON)
def test_any_changed_value_is_booked_or_refused_in_visma_shape(sandbox: Sandbox, target, wrap: bool, value) -> None:
    where, name = target
    body = copy.deepcopy(journal("202606"))
    holder = {"header": body, "line": _line(body), "segment": _line(body)["subaccount"][0]}[where]
    holder[name] = {"value": value} if wrap else value
    answer = sandbox.create(dumps(body))
    assert answer.status_code in (201, 400), answer.text
    if answer.status_code == 400:
        assert {"ExceptionType", "ExceptionMessage", "ExceptionFaultCode"} <= set(answer.json())
