"""The block forms a payroll admin reads in the Prefect UI, asserted on the JSON schema the UI renders them from.

The UI (both of Prefect 3.9's) lays a form's fields out by each property's `position`, labels a field with its
title, taken for a `$ref` field from the referenced definition merged with the property's own keys, and adds
" (Optional)" to a field that is not required. `form_labels` does the same, so these tests read what a person
sees. The last tests check the schema the Prefect server stores, and that blocks saved under an earlier schema
(another checksum) still load and save.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prefect.blocks.core import Block

from nmbrs_visma.blocks import AdministrationMappingBlock, NmbrsAccount, VismaNetAccount
from nmbrs_visma.blocks.mapping import CostCenterSetting, CostUnitSetting
from nmbrs_visma.blocks.oauth import TOKEN_FIELDS
from nmbrs_visma.journals.models import AdministrationMapping, DimensionSetting

BLOCKS: tuple[type[Block], ...] = (VismaNetAccount, NmbrsAccount, AdministrationMappingBlock)
ACCOUNTS = (VismaNetAccount, NmbrsAccount)


def resolved(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """A property as the UI resolves it: a `$ref` replaced by its definition, the property's own keys on top."""
    if "$ref" in prop:
        rest = {key: value for key, value in prop.items() if key != "$ref"}
        return {**schema["definitions"][prop["$ref"].rsplit("/", 1)[-1]], **rest}
    return prop


def form_fields(schema: dict[str, Any]) -> list[str]:
    """The field names in the order the form shows them (by `position`, then as listed)."""
    items = list(schema["properties"].items())
    return [name for name, _ in sorted(items, key=lambda item: item[1].get("position", float("inf")))]


def form_labels(schema: dict[str, Any]) -> dict[str, str]:
    """Each field's label as the form shows it."""
    required = set(schema.get("required", []))
    labels = {}
    for name, prop in schema["properties"].items():
        title = resolved(schema, prop).get("title", "")
        labels[name] = title if name in required else f"{title} (Optional)"
    return labels


# -- the mapping's two dimensions ------------------------------------------------------------------------------


def test_cost_center_and_cost_unit_are_told_apart() -> None:
    schema = AdministrationMappingBlock.model_json_schema()
    labels = form_labels(schema)
    assert labels["cost_center"] == "Cost center (Optional)"
    assert labels["cost_unit"] == "Cost unit (Optional)"
    assert "DimensionSetting" not in str(schema)

    center = resolved(schema, schema["properties"]["cost_center"])
    unit = resolved(schema, schema["properties"]["cost_unit"])
    assert center["description"] != unit["description"]
    assert "cost center" in center["description"] and "cost unit" in unit["description"]
    # the sections' own fields say which dimension they are about
    for name in ("enabled", "description", "default"):
        assert center["properties"][name]["description"] != unit["properties"][name]["description"], name
        assert center["properties"][name]["title"] and unit["properties"][name]["title"]
    assert center["properties"]["enabled"]["title"] == "Post cost centers"
    assert unit["properties"]["enabled"]["title"] == "Post cost units"


def test_the_dimension_kinds_are_still_the_domain_setting() -> None:
    """The form's kinds change titles only: values from code, `config apply` or a stored document all work, and
    the domain mapping holds plain `DimensionSetting`s (so it equals one built without the blocks)."""
    assert issubclass(CostCenterSetting, DimensionSetting) and issubclass(CostUnitSetting, DimensionSetting)
    block = AdministrationMappingBlock(
        nmbrs_company=1001,
        visma_account="main",
        branch="1",
        ledger="L",
        cost_center=DimensionSetting(enabled=True, description="Department", default="900"),
        cost_unit={"enabled": True, "description": "Project"},
    )
    assert isinstance(block.cost_center, CostCenterSetting) and isinstance(block.cost_unit, CostUnitSetting)
    mapping = block.to_mapping()
    assert type(mapping.cost_center) is DimensionSetting and type(mapping.cost_unit) is DimensionSetting
    assert mapping == AdministrationMapping(
        nmbrs_company=1001,
        visma_account="main",
        branch="1",
        ledger="L",
        cost_center=DimensionSetting(enabled=True, description="Department", default="900"),
        cost_unit=DimensionSetting(enabled=True, description="Project"),
    )
    # a plain setting assigned to a loaded block (no validation on assignment) still maps
    block.cost_unit = DimensionSetting(enabled=True, description="Projekt")  # type: ignore[assignment]
    assert block.to_mapping().cost_unit == DimensionSetting(enabled=True, description="Projekt")


# -- every field titled and described --------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.__name__)
def test_every_field_is_titled_and_described(block: type[Block]) -> None:
    schema = block.model_json_schema()
    for name, prop in schema["properties"].items():
        shown = resolved(schema, prop)
        assert shown.get("title"), f"{block.__name__}.{name} has no title"
        assert "_" not in shown["title"], f"{block.__name__}.{name}: title {shown['title']!r} reads like code"
        assert len(shown.get("description", "")) > 15, f"{block.__name__}.{name} is not described"
    for definition_name, definition in schema.get("definitions", {}).items():
        for name, prop in definition.get("properties", {}).items():
            assert prop.get("title") and prop.get("description"), f"{definition_name}.{name}"


# -- the account forms: identity first, tokens last -------------------------------------------------------------


@pytest.mark.parametrize("block", ACCOUNTS, ids=lambda block: block.__name__)
def test_identity_fields_come_before_the_token_fields(block: type[Block]) -> None:
    schema = block.model_json_schema()
    shown = form_fields(schema)
    assert list(schema["properties"]) == shown  # the listed order and the positions agree
    assert [schema["properties"][name]["position"] for name in shown] == list(range(len(shown)))
    assert set(shown) == set(block.model_fields)  # every field once
    assert tuple(shown[-4:]) == TOKEN_FIELDS
    identity = ["base_url", "client_id", "client_secret"]
    identity += ["grant_type", "tenant_id"] if block is VismaNetAccount else ["subscription_key"]
    assert max(shown.index(name) for name in identity) < min(shown.index(name) for name in TOKEN_FIELDS)
    assert shown[0] == "base_url"


def test_the_forms_read_in_this_order() -> None:
    assert form_fields(VismaNetAccount.model_json_schema()) == [
        "base_url",
        "grant_type",
        "tenant_id",
        "client_id",
        "client_secret",
        "timeout_seconds",
        "token_url",
        "authorize_url",
        "redirect_uri",
        "scopes",
        "refresh_token_lifetime_days",
        "access_token",
        "access_token_expires_at",
        "refresh_token",
        "refresh_token_issued_at",
    ]
    assert form_fields(NmbrsAccount.model_json_schema())[:6] == [
        "base_url",
        "client_id",
        "client_secret",
        "subscription_key",
        "timeout_seconds",
        "token_url",
    ]


@pytest.mark.parametrize("block", ACCOUNTS, ids=lambda block: block.__name__)
def test_the_token_fields_say_connect_fills_them_in(block: type[Block]) -> None:
    schema = block.model_json_schema()
    labels = form_labels(schema)
    assert [labels[name] for name in TOKEN_FIELDS] == [
        "Access token (Optional)",
        "Access token valid until (Optional)",
        "Refresh token (Optional)",
        "Refresh token issued at (Optional)",
    ]
    for name in TOKEN_FIELDS:
        assert "Filled in by `nmbrs-visma connect`" in schema["properties"][name]["description"], name
    assert set(schema["secret_fields"]) >= {"client_secret", "access_token", "refresh_token"}
    assert labels["client_id"] == "Client ID" and labels["base_url"] == "Base URL (Optional)"


# -- compatibility: names kept, older documents load -------------------------------------------------------------


def test_slugs_and_field_names_are_unchanged() -> None:
    """What saved documents and `config apply` rely on: block type slugs and field names."""
    assert [block.get_block_type_slug() for block in BLOCKS] == [
        "visma-net-account",
        "nmbrs-account",
        "nmbrs-visma-administration-mapping",
    ]
    common = {
        "token_url",
        "authorize_url",
        "client_id",
        "client_secret",
        "scopes",
        "redirect_uri",
        "access_token",
        "access_token_expires_at",
        "refresh_token",
        "refresh_token_issued_at",
        "base_url",
        "refresh_token_lifetime_days",
        "timeout_seconds",
    }
    assert set(VismaNetAccount.model_fields) == common | {"grant_type", "tenant_id"}
    assert set(NmbrsAccount.model_fields) == common | {"subscription_key"}
    assert set(AdministrationMapping.model_fields) <= set(AdministrationMappingBlock.model_fields)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.__name__)
def test_prefect_sends_the_form_as_shown(block: type[Block]) -> None:
    """The schema Prefect registers (`_to_block_schema`) is the one these tests read, checksum included."""
    fields = block._to_block_schema().fields
    assert fields == block.model_json_schema()
    assert list(fields["properties"]) == form_fields(fields)


@pytest.mark.slow
def test_the_server_stores_the_form_and_documents_of_an_older_schema_load(clean_blocks: None) -> None:
    """Register the block types on a real Prefect server; its stored schema keeps the order and titles. A
    document saved under an earlier schema (another checksum: the fields in declaration order, no titles) loads
    with today's class, and saving it moves it to today's schema."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate, BlockSchemaCreate

    with get_client(sync_client=True) as client:
        for block in BLOCKS:
            block.register_type_and_schema()
            stored = client.read_block_schema_by_checksum(block._calculate_schema_checksum())
            assert form_fields(stored.fields) == form_fields(block.model_json_schema())
            assert form_labels(stored.fields) == form_labels(block.model_json_schema())

        older = copy.deepcopy(NmbrsAccount.model_json_schema())
        older["properties"] = {
            name: {key: value for key, value in older["properties"][name].items() if key not in ("title", "position")}
            for name in NmbrsAccount.model_fields
        }
        block_type = client.read_block_type_by_slug(NmbrsAccount.get_block_type_slug())
        old_schema = client.create_block_schema(
            BlockSchemaCreate(
                fields=older, block_type_id=block_type.id, capabilities=list(NmbrsAccount.get_block_capabilities())
            )
        )
        assert old_schema.checksum != NmbrsAccount._calculate_schema_checksum()
        client.create_block_document(
            BlockDocumentCreate(
                name="saved-long-ago",
                block_schema_id=old_schema.id,
                block_type_id=block_type.id,
                data={
                    "client_id": "old-client",
                    "client_secret": "old-secret-value",
                    "subscription_key": "old-subscription-key",
                    "refresh_token": "old-refresh-token",
                    "refresh_token_issued_at": "2026-01-02T03:04:05+00:00",
                    "refresh_token_lifetime_days": 30,
                },
            )
        )
        loaded = NmbrsAccount.load("saved-long-ago")
        assert loaded.client_id == "old-client"
        assert loaded.timeout_seconds == 30.0  # a field added since: the default
        assert loaded.refresh_token is not None and loaded.refresh_token.get_secret_value() == "old-refresh-token"
        assert loaded.refresh_token_expires_at is not None and loaded.refresh_token_expires_at.day == 1  # Feb 1
        loaded.save("saved-long-ago", overwrite=True)
        document = client.read_block_document_by_name("saved-long-ago", NmbrsAccount.get_block_type_slug())
        assert document.block_schema is not None
        assert document.block_schema.checksum == NmbrsAccount._calculate_schema_checksum()

        mapping_type = client.read_block_type_by_slug(AdministrationMappingBlock.get_block_type_slug())
        old_mapping = copy.deepcopy(AdministrationMappingBlock.model_json_schema())
        old_mapping["definitions"]["DimensionSetting"] = old_mapping["definitions"].pop("CostCenterSetting")
        old_mapping["definitions"].pop("CostUnitSetting")
        for name in ("cost_center", "cost_unit"):
            old_mapping["properties"][name]["$ref"] = "#/definitions/DimensionSetting"
        old_mapping_schema = client.create_block_schema(
            BlockSchemaCreate(fields=old_mapping, block_type_id=mapping_type.id, capabilities=[])
        )
        client.create_block_document(
            BlockDocumentCreate(
                name="company-1001",
                block_schema_id=old_mapping_schema.id,
                block_type_id=mapping_type.id,
                data={
                    "nmbrs_company": 1001,
                    "visma_account": "main",
                    "branch": "1",
                    "ledger": "L",
                    "cost_center": {"enabled": True, "description": "Department", "default": ""},
                    "cost_unit": {"enabled": False, "description": "", "default": ""},
                },
            )
        )
    mapping = AdministrationMappingBlock.load("company-1001").to_mapping()
    assert mapping.cost_center == DimensionSetting(enabled=True, description="Department")
