"""Contract tests: every request the client sends and every answer the emulator gives, for every path used,
validated against the published Nmbrs spec (../shared/reference/nmbrs/nmbrs-openapi.yaml)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from pydantic import SecretStr

from nmbrs_visma.clients.errors import ApiError
from nmbrs_visma.clients.nmbrs import DEFAULT_SCOPES, JOURNAL_KINDS, NmbrsClient, NmbrsCompany
from nmbrs_visma.sandbox.demo_data import DEMO_YEAR
from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
from nmbrs_visma.sandbox.nmbrs.world import Exchange

from .conftest import make_client

pytestmark = pytest.mark.contract

USED_PATHS = {
    "/api/debtors",
    "/api/debtors/{debtorId}/companies",
    "/api/companies/{companyId}/period",
    "/api/companies/{companyId}/runs",
    *(f"/api/companies/{{companyId}}/runs/{{payrollRunId}}/{kind}" for kind in JOURNAL_KINDS),
    "/api/documents/{taskId}",
}


@pytest.fixture(scope="module")
def spec(reference_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((reference_dir / "nmbrs" / "nmbrs-openapi.yaml").read_text(encoding="utf-8"))


def resolve(node: Any, spec: dict[str, Any], depth: int = 0) -> Any:
    """Inline every local `$ref` (the schemas used here are not recursive)."""
    assert depth < 40, "unexpectedly deep $ref chain"
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target, spec, depth + 1)
        return {key: resolve(value, spec, depth + 1) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item, spec, depth + 1) for item in node]
    return node


def template_of(path: str, spec: dict[str, Any]) -> str:
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} is not a path of the Nmbrs spec")


def check_exchange(exchange: Exchange, spec: dict[str, Any]) -> str:
    """Assert one recorded exchange keeps the spec; returns its path template."""
    template = template_of(exchange.path, spec)
    item = resolve(spec["paths"][template], spec)
    operation = item.get(exchange.method.lower())
    assert operation is not None, f"{exchange.method} {template} is not in the spec"
    parameters = {(p["in"], p["name"]): p for p in [*item.get("parameters", []), *operation.get("parameters", [])]}

    # request: only declared query parameters, the required ones present, values of the declared type;
    # the emulator answers 400 exactly when the request breaks these rules
    problems = []
    query = dict(parse_qsl(exchange.query, keep_blank_values=True))
    for name, value in query.items():
        declared = parameters.get(("query", name))
        if declared is None:
            problems.append(f"query parameter {name} is not in the spec")
            continue
        schema = declared.get("schema", {})
        instance: Any = int(value) if schema.get("type") == "integer" and value.lstrip("-").isdigit() else value
        errors = list(OAS30Validator(schema).iter_errors(instance))
        problems.extend(f"query parameter {name}: {error.message}" for error in errors)
    for (where, name), declared in parameters.items():
        if where == "query" and declared.get("required") and name not in query:
            problems.append(f"required query parameter {name} missing")
    if exchange.status == 400:
        assert problems, f"{template}: the emulator refused a request that keeps the spec"
    else:
        assert not problems, f"{exchange.method} {template}: {problems}"
    assert "x-subscription-key" in exchange.header_names, f"{template}: X-Subscription-Key header missing"
    assert "authorization" in exchange.header_names, f"{template}: no bearer token"

    # response: a declared status, and a body of the declared schema
    responses = operation["responses"]
    assert str(exchange.status) in responses, f"{exchange.method} {template} answered undeclared {exchange.status}"
    content = responses[str(exchange.status)].get("content", {})
    media = exchange.content_type.split(";")[0].strip()
    assert media in content, f"{template} {exchange.status}: content type {media} not declared ({list(content)})"
    if media == "application/json":
        OAS30Validator(content[media]["schema"]).validate(json.loads(exchange.body))
    return template


def drive_every_path(client: NmbrsClient, world: NmbrsWorld) -> None:
    """A session touching every path the pipeline uses, answers good and bad."""
    for debtor in client.debtors():
        for company in client.companies(debtor.debtor_id):
            client.current_period(company.company_id)
            runs = client.runs(company, DEMO_YEAR)
            if company.number in (1002, 1003):
                for kind in JOURNAL_KINDS:
                    client.journal_xml(runs[-1], kind=kind)
    ghost = NmbrsCompany(company_id="00000000-0000-4000-8000-000000000000", number=9)
    with pytest.raises(ApiError):
        client.runs(ghost, DEMO_YEAR)  # 404
    with pytest.raises(ApiError):
        client._json(f"/api/companies/{next(iter(world.companies))}/runs", {"year": "x"}, "runs")  # 400
    world.fail_next(1, 429)
    world.fail_next(4, 503)
    with pytest.raises(ApiError):
        client.debtors()


def test_client_requests_and_emulator_answers_keep_the_spec(spec, server, auth, world, sleeps) -> None:
    with make_client(server, auth, sleep=sleeps) as client:
        drive_every_path(client, world)
        with (
            make_client(server, auth, subscription_key=SecretStr("not-the-key-0000")) as bad,
            pytest.raises(ApiError),
        ):
            bad.debtors()  # 401
    exchanges = world.calls("/api/")
    seen = {check_exchange(exchange, spec) for exchange in exchanges}
    assert seen == USED_PATHS
    statuses = {exchange.status for exchange in exchanges}
    assert {200, 202, 400, 401, 404, 429, 503} <= statuses


def test_the_global_company_list_refuses_multi_debtor_consent_in_the_specs_shape(spec, server, auth, world) -> None:
    with make_client(server, auth) as client, pytest.raises(ApiError, match="40303"):
        client._json("/api/companies", None, "all companies")
    exchange = world.calls("/api/companies")[-1]
    assert check_exchange(exchange, spec) == "/api/companies" and exchange.status == 403


def test_requested_scopes_cover_every_operation_used(spec, auth) -> None:
    declared = set(spec["components"]["securitySchemes"]["Bearer"]["flows"]["authorizationCode"]["scopes"])
    assert set(DEFAULT_SCOPES) <= declared
    for template in USED_PATHS:
        operation = spec["paths"][template]["get"]
        alternatives = {scope for requirement in operation["security"] for scope in requirement.get("Bearer", [])}
        assert alternatives & set(DEFAULT_SCOPES), f"{template} needs one of {sorted(alternatives)}"
    request = auth.authorization_request()
    assert "code_challenge_method=S256" in request.url and "offline_access" in request.url
