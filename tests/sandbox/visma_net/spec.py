"""The published Visma.net ERP specs (../shared/reference/visma-net-erp/*.yml) as the emulator's tests read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator


def strict(node: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists properties: a misnamed field fails."""
    if isinstance(node, dict):
        node = {key: strict(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


class Spec:
    """Every spec file of the reference folder; `operation` finds a request's operation among them."""

    def __init__(self, reference_dir: Path) -> None:
        self.paths = sorted((reference_dir / "visma-net-erp").glob("*.yml"))
        self.docs = [yaml.safe_load(path.read_text()) for path in self.paths]

    def operation(self, method: str, path: str) -> tuple[dict, dict]:
        for doc in self.docs:
            for template, operations in doc["paths"].items():
                pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
                if re.match(pattern, path, re.IGNORECASE) and method.lower() in operations:
                    return doc, operations[method.lower()]
        raise AssertionError(f"{method} {path} is not in the published spec")

    @staticmethod
    def validator(doc: dict, schema: dict) -> Draft202012Validator:
        return Draft202012Validator(strict({**schema, "components": doc["components"]}))

    def response_validator(self, method: str, path: str, status: str = "200") -> Draft202012Validator:
        """The strict validator of an operation's JSON answer."""
        doc, operation = self.operation(method, path)
        return self.validator(doc, operation["responses"][status]["content"]["application/json"]["schema"])
