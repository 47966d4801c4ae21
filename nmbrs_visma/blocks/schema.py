"""The JSON schema of a block class, computed once per process.

Why: Prefect's `Block.save` asks for the block's JSON schema once per field (to find the secret fields) and
again while serialising, and pydantic builds it from scratch each time, so the schema, not the data, would be
the work of a save; `nmbrs-visma config apply` saves one block per account and per company, so that work
grows with the bureau (docs/reliability.md). A class's schema does not change while the process runs, so it is
built once per class and arguments and handed out as a copy (callers may change what they get).

The schema is also where the Prefect UI's block form comes from: it lays the fields out by each property's
`position` (Prefect numbers them in field declaration order, parent class first). A block that declares
`_form_order` gets its properties, and their positions, in that order instead, so that a form reads the way
a person fills it in (who you are, then where, then what the pipeline fills in) whatever class declares a
field. Only the presentation changes: field names, types and stored data stay as they are.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

from pydantic.json_schema import GenerateJsonSchema


def in_form_order(schema: dict[str, Any], order: tuple[str, ...]) -> None:
    """Put `schema`'s properties in `order` (names not in it keep their place after it) and number their
    `position`s 0, 1, ... to match, in place. Prefect's UI sorts a form's fields by `position`."""
    properties: dict[str, Any] = schema.get("properties", {})
    names = [name for name in order if name in properties] + [name for name in properties if name not in order]
    schema["properties"] = {name: {**properties[name], "position": index} for index, name in enumerate(names)}


class CachedJsonSchema:
    """Mixin for a Prefect block class (put it before the block base class)."""

    _json_schemas: ClassVar[dict[tuple[Any, ...], dict[str, Any]]] = {}
    _form_order: ClassVar[tuple[str, ...]] = ()  # the form's field order; empty: declaration order

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
            if cls._form_order:
                in_form_order(schema, cls._form_order)
            CachedJsonSchema._json_schemas[key] = schema
        return copy.deepcopy(schema)
