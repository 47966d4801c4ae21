"""Contract: what the client sends and what the emulator answers, held to the published Visma.net specs.

Schemas are made strict (no property the spec does not name) so a typo in a field name fails here.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest
import yaml
from jsonschema import Draft202012Validator

from .conftest import TENANT, Sandbox, dumps, journal

pytestmark = pytest.mark.contract


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _strict(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


class Spec:
    def __init__(self, reference_dir: Path) -> None:
        paths = sorted((reference_dir / "visma-net-erp").glob("*.yml"))
        self.docs = [yaml.safe_load(path.read_text()) for path in paths]

    def operation(self, method: str, path: str) -> tuple[dict, dict]:
        for doc in self.docs:
            for template, operations in doc["paths"].items():
                pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
                if re.match(pattern, path, re.IGNORECASE) and method.lower() in operations:
                    return doc, operations[method.lower()]
        raise AssertionError(f"{method} {path} is not in the published spec")

    @staticmethod
    def validator(doc: dict, schema: dict) -> Draft202012Validator:
        return Draft202012Validator(_strict({**schema, "components": doc["components"]}))


@pytest.fixture(scope="module")
def spec(reference_dir: Path) -> Spec:
    return Spec(reference_dir)


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
    token = exercised.service_auth().access_token().get_secret_value()
    batch = exercised.world.transactions(TENANT)[0].batch_number
    url = exercised.url + target.format(batch=batch)
    answer = httpx2.get(url, headers={"Authorization": f"Bearer {token}"})
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
    token = exercised.service_auth().access_token().get_secret_value()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    created = httpx2.post(f"{exercised.url}/v2/journaltransaction", content=dumps(journal("202606")), headers=headers)
    assert created.status_code == 201 and re.search(r"/v2/journaltransaction/\d+$", created.headers["Location"])
    refused = httpx2.post(f"{exercised.url}/v2/journaltransaction", content=dumps(journal("202501")), headers=headers)
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


def test_the_emulator_knows_exactly_the_properties_the_spec_defines(spec: Spec) -> None:
    from nmbrs_visma.sandbox.visma_net.journal import HEADER_PROPERTIES, LINE_PROPERTIES, SEGMENT_PROPERTIES

    doc, _ = spec.operation("POST", "/v2/journaltransaction")
    schemas = doc["components"]["schemas"]
    assert set(schemas["JournalTransactionUpdateDto"]["properties"]) == HEADER_PROPERTIES
    assert set(schemas["JournalTransactionLineUpdateDto"]["properties"]) == LINE_PROPERTIES
    assert set(schemas["SegmentUpdateDto"]["properties"]) == SEGMENT_PROPERTIES


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
    token = exercised.service_auth().access_token().get_secret_value()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = copy.deepcopy(journal("202606"))
    line = body["journalTransactionLines"][0]
    if where == "header":
        body["debitTotal"] = {"value": 1}
    elif where == "line":
        line["debitAmount"] = {"value": 1}  # the response's name, not the update DTO's
    else:
        line["subaccount"] = [{"segmentId": 1, "segmentValue": "0100", "segmentDescription": "Department"}]
    refused = httpx2.post(f"{exercised.url}/v2/journaltransaction", content=dumps(body), headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["ExceptionMessage"] == expected
    assert refused.json()["ExceptionFaultCode"] == "InvalidFormat"


def test_the_emulator_refuses_an_amount_written_as_a_string(exercised: Sandbox) -> None:
    token = exercised.service_auth().access_token().get_secret_value()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = copy.deepcopy(journal("202606"))
    line = body["journalTransactionLines"][0]
    amount = "debitAmountInCurrency" if "debitAmountInCurrency" in line else "creditAmountInCurrency"
    line[amount] = {"value": str(line[amount]["value"])}  # the schema's number, as text
    refused = httpx2.post(f"{exercised.url}/v2/journaltransaction", content=dumps(body), headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["ExceptionMessage"] == f"Line 1: {amount}: not a number"
