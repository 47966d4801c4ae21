"""The JSON schema of a block class, computed once per process.

Why: Prefect's `Block.save` asks for the block's JSON schema once per field (to find the secret fields) and
again while serialising, and pydantic builds it from scratch each time: milliseconds per call, most of a
save. `nmbrs-visma config apply` saves one block per account and per company, so a bureau's 500 companies
spent minutes there. A class's schema does not change while the process runs, so it is built once per class
and arguments and handed out as a copy (callers may change what they get).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

from pydantic.json_schema import GenerateJsonSchema


class CachedJsonSchema:
    """Mixin for a Prefect block class (put it before the block base class)."""

    _json_schemas: ClassVar[dict[tuple[Any, ...], dict[str, Any]]] = {}

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool = True,
        ref_template: str = "#/definitions/{model}",
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: Literal["validation", "serialization"] = "validation",
    ) -> dict[str, Any]:
        key = (cls, by_alias, ref_template, schema_generator, mode)
        schema = CachedJsonSchema._json_schemas.get(key)
        if schema is None:
            schema = super().model_json_schema(by_alias, ref_template, schema_generator, mode)  # type: ignore[misc]
            CachedJsonSchema._json_schemas[key] = schema
        return copy.deepcopy(schema)
