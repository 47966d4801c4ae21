"""Contract: what the client sends and what the emulator answers, held to the published Visma.net specs.

Schemas are made strict (no property the spec does not name) so a typo in a field name fails here.
"""

from __future__ import annotations

import copy
import json
import re
from urllib.parse import parse_qs

import httpx2
import pytest

from tests.support import TENANT, Sandbox, dumps, journal

from .spec import Spec

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def exercised(sandbox: Sandbox) -> Sandbox:
    """Drive every call the project makes, so the emulator has captured real client requests."""
    with sandbox.client(page_size=2) as client:
        client.reference()
        client.branches()
        client.ledgers()
        batch = client.create_journal_transaction(dumps(journal("202605")))
        client.create_journal_transaction(dumps(journal("202605", hold=True)))
        client.journal_transaction(batch)
        client.list_journal_transactions("202605")
        client.release_journal_transaction(batch)
    return sandbox


def test_every_client_request_matches_the_spec(exercised: Sandbox, spec: Spec) -> None:
    requests = exercised.world.received
    assert {r.path for r in requests} >= {"/v1/financialPeriod", "/v1/account", "/v2/journaltransaction"}
    bodies = 0
    for request in requests:
        doc, operation = spec.operation(request.method, request.path)
        documented = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        sent = set(parse_qs(request.query))
        assert sent <= documented, f"{request.method} {request.path}: undocumented query {sent - documented}"
        if request.body:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            errors = list(spec.validator(doc, schema).iter_errors(json.loads(request.body)))
            assert not errors, f"{request.method} {request.path}: {errors[0].message} at {list(errors[0].path)}"
            bodies += 1
    assert bodies >= 2


USED_READS = [
    "/v1/financialPeriod",
    "/v1/dimension/SUBACCOUNT?expandSegmentsValues=true",
    "/v1/dimension/SUBACCOUNT",
    "/v1/account",
    "/v1/branch",
    "/v1/ledger",
    "/v2/journaltransaction?periodId=202605&pageSize=2&pageNumber=2",
    "/v2/journaltransaction?periodId=202605",
    "/v2/journaltransaction/{batch}",
]


@pytest.mark.parametrize("target", USED_READS)
def test_every_emulator_answer_matches_the_spec(exercised: Sandbox, spec: Spec, target: str) -> None:
    batch = exercised.world.transactions(TENANT)[0].batch_number
    url = exercised.url + target.format(batch=batch)
    answer = exercised.request("GET", url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    doc, operation = spec.operation("GET", httpx2.URL(url).path)
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    body = answer.json()
    assert body, "an empty answer proves nothing"
    errors = list(spec.validator(doc, schema).iter_errors(body))
    assert not errors, f"{target}: {errors[0].message} at {list(errors[0].path)}"
    expected = {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ipp-request-id"}
    assert expected <= set(answer.headers.keys())


def test_create_answers_201_with_location_and_errors_in_visma_shape(exercised: Sandbox) -> None:
    created = exercised.create(dumps(journal("202606")))
    assert created.status_code == 201 and re.search(r"/v2/journaltransaction/\d+$", created.headers["Location"])
    refused = exercised.create(dumps(journal("202501")))
    assert refused.status_code == 400
    assert {"ExceptionType", "ExceptionMessage", "ExceptionFaultCode"} <= set(refused.json())
    denied = httpx2.get(f"{exercised.url}/v1/account", headers={"Authorization": "Bearer expired"})
    assert denied.status_code == 401 and set(denied.json()) == {"Message"}


def test_the_strict_validator_catches_a_misnamed_field(exercised: Sandbox, spec: Spec) -> None:
    doc, operation = spec.operation("POST", "/v2/journaltransaction")
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    body = copy.deepcopy(journal())
    body["journalTransactionLines"][0]["debitAmount"] = {"value": 1}  # the response name, not the update DTO's
    assert list(spec.validator(doc, schema).iter_errors(json.loads(dumps(body))))


def _kind(schema: dict) -> str:
    """The emulator's name of a JSON type: string, date-time, boolean, number or int32."""
    if schema["type"] == "integer":
        assert schema.get("format") == "int32", schema
        return "int32"
    if schema["type"] == "string" and schema.get("format") == "date-time":
        return "date-time"
    return schema["type"]


def _kinds(schemas: dict, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """A schema's DtoValue-wrapped properties and its plain scalar ones, each with its kind."""
    wrapped, plain = {}, {}
    for prop, schema in schemas[name]["properties"].items():
        if "$ref" in schema:
            target = schemas[schema["$ref"].rsplit("/", 1)[-1]]
            assert set(target["properties"]) == {"value"}, f"{name}.{prop} is not a DtoValue"
            wrapped[prop] = _kind(target["properties"]["value"])
        elif schema.get("type") != "array":
            plain[prop] = _kind(schema)
    return wrapped, plain


def test_the_emulator_knows_exactly_the_properties_and_types_the_spec_defines(spec: Spec) -> None:
    from nmbrs_visma.sandbox.visma_net.journal import (
        HEADER_PROPERTIES,
        HEADER_VALUES,
        LINE_PROPERTIES,
        LINE_VALUES,
        OPERATIONS,
        SEGMENT_FIELDS,
        SEGMENT_PROPERTIES,
    )

    doc, _ = spec.operation("POST", "/v2/journaltransaction")
    schemas = doc["components"]["schemas"]
    assert set(schemas["JournalTransactionUpdateDto"]["properties"]) == HEADER_PROPERTIES
    assert set(schemas["JournalTransactionLineUpdateDto"]["properties"]) == LINE_PROPERTIES
    assert set(schemas["SegmentUpdateDto"]["properties"]) == SEGMENT_PROPERTIES
    assert _kinds(schemas, "JournalTransactionUpdateDto") == (HEADER_VALUES, {})
    assert _kinds(schemas, "JournalTransactionLineUpdateDto") == (LINE_VALUES, {"operation": "string"})
    assert _kinds(schemas, "SegmentUpdateDto") == ({}, SEGMENT_FIELDS)
    assert tuple(schemas["JournalTransactionLineUpdateDto"]["properties"]["operation"]["enum"]) == OPERATIONS
    header, line = schemas["JournalTransactionUpdateDto"], schemas["JournalTransactionLineUpdateDto"]
    assert header["properties"]["journalTransactionLines"]["items"]["$ref"].endswith("/JournalTransactionLineUpdateDto")
    assert line["properties"]["subaccount"]["items"]["$ref"].endswith("/SegmentUpdateDto")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("header", "debitTotal: not a property of JournalTransactionUpdateDto"),
        ("line", "Line 1: debitAmount: not a property of JournalTransactionLineUpdateDto"),
        ("segment", "Line 1: segmentDescription: not a property of SegmentUpdateDto"),
    ],
)
def test_the_emulator_refuses_a_property_the_spec_does_not_define(
    exercised: Sandbox, where: str, expected: str
) -> None:
    body = copy.deepcopy(journal("202606"))
    line = body["journalTransactionLines"][0]
    if where == "header":
        body["debitTotal"] = {"value": 1}
    elif where == "line":
        line["debitAmount"] = {"value": 1}  # the response's name, not the update DTO's
    else:
        line["subaccount"][0]["segmentDescription"] = "Department"  # the response's name; the rest is complete
    refused = exercised.create(dumps(body))
    assert refused.status_code == 400, refused.text
    assert refused.json()["ExceptionMessage"] == expected
    assert refused.json()["ExceptionFaultCode"] == "InvalidFormat"


def test_the_emulator_refuses_an_amount_written_as_a_string(exercised: Sandbox) -> None:
    body = copy.deepcopy(journal("202606"))
    line = body["journalTransactionLines"][0]
    amount = "debitAmountInCurrency" if "debitAmountInCurrency" in line else "creditAmountInCurrency"
    line[amount] = {"value": str(line[amount]["value"])}  # the schema's number, as text
    refused = exercised.create(dumps(body))
    assert refused.status_code == 400, refused.text
    assert refused.json()["ExceptionMessage"] == f"Line 1: {amount}: not a number"
