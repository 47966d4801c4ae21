"""The published Visma.net contract for journal transaction payloads, as a jsonschema validator.

The spec's `JournalTransactionUpdateDto` / `JournalTransactionLineUpdateDto` (with every `$ref` resolved
inside the spec) are made strict: `additionalProperties: false` on every object schema, so a property the
spec does not name fails, and a schema with properties but no type (the spec's `financialPeriod` wrapper)
must be an object, so an unwrapped value fails too. `transactionDate` is checked as an ISO date-time;
Visma.net writes and accepts it without an offset (a local booking date), which strict RFC 3339 rejects.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = "visma-net-erp/visma-journaltransactionv2-api-openapi.yml"
BASE = "urn:visma-net:journaltransactionv2"


def _strict(schema: object) -> object:
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
            schema.setdefault("type", "object")  # e.g. financialPeriodIn...: a wrapper object, never a bare value
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _iso_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value


@cache
def validators(reference_dir: Path) -> dict[str, Draft202012Validator]:
    spec = yaml.safe_load((reference_dir / SPEC).read_text(encoding="utf-8"))
    strict = {"components": {"schemas": _strict(copy.deepcopy(spec["components"]["schemas"]))}}
    registry = Registry().with_resource(BASE, Resource(contents=strict, specification=DRAFT202012))
    checker = FormatChecker()
    checker.checks("date-time")(_iso_datetime)
    return {
        name: Draft202012Validator(
            {"$ref": f"{BASE}#/components/schemas/{name}"}, registry=registry, format_checker=checker
        )
        for name in ("JournalTransactionUpdateDto", "JournalTransactionLineUpdateDto")
    }


def contract_errors(reference_dir: Path, payload: bytes) -> list[str]:
    """Every violation of the spec by one payload (empty: it conforms), lines checked one by one as well."""
    document = json.loads(payload)
    checks = validators(reference_dir)
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in checks["JournalTransactionUpdateDto"].iter_errors(document)
    ]
    for number, line in enumerate(document.get("journalTransactionLines", []), start=1):
        errors += [f"line {number}: {e.message}" for e in checks["JournalTransactionLineUpdateDto"].iter_errors(line)]
    return errors
