"""The published Nmbrs spec (../shared/reference/nmbrs/nmbrs-openapi.yaml) as the emulator's tests read it: the
paths the project uses, and a check that one recorded exchange (request and answer) keeps the spec."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from openapi_schema_validator import OAS30Validator

from nmbrs_visma.clients.nmbrs import JOURNAL_KINDS
from nmbrs_visma.sandbox.nmbrs.world import Exchange

SPEC_FILE = Path("nmbrs") / "nmbrs-openapi.yaml"  # in the reference folder


def load_spec(reference_dir: Path) -> dict[str, Any]:
    """The spec as published, parsed."""
    return yaml.safe_load((reference_dir / SPEC_FILE).read_text(encoding="utf-8"))


USED_PATHS = {  # every path template the project's client calls
    "/api/debtors",
    "/api/debtors/{debtorId}/companies",
    "/api/companies/{companyId}/period",
    "/api/companies/{companyId}/runs",
    *(f"/api/companies/{{companyId}}/runs/{{payrollRunId}}/{kind}" for kind in JOURNAL_KINDS),
    "/api/documents/{taskId}",
}


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
