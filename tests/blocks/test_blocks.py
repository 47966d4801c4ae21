"""The block types: Prefect's standard block checks, secrets never shown, tokens saved back, mappings loaded."""

from __future__ import annotations

import datetime as dt

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from nmbrs_visma.blocks import (
    AdministrationMappingBlock,
    NmbrsAccount,
    VismaNetAccount,
    load_mappings,
    mapping_block_name,
)
from nmbrs_visma.journals.models import AdministrationMapping, ClosedPeriodPolicy, DimensionSetting

SECRETS = ("client-secret-abc123", "access-token-def456", "refresh-token-ghi789", "subscription-key-jkl012")


class _OfflineLogo:
    def test_has_a_valid_image(self, block: type[Block]) -> None:
        """Replaces the upstream check, which downloads the logo with PIL: CI has neither internet nor PIL.

        The blocks ship no logo (the UI shows its default icon); a logo, if ever set, must be https.
        """
        logo = block._logo_url
        assert logo is None or str(logo).startswith("https://")


class TestVismaNetAccountStandard(_OfflineLogo, BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return VismaNetAccount


class TestNmbrsAccountStandard(_OfflineLogo, BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return NmbrsAccount


class TestAdministrationMappingStandard(_OfflineLogo, BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return AdministrationMappingBlock


def _visma(**changes: object) -> VismaNetAccount:
    values: dict[str, object] = {
        "client_id": "client-1",
        "client_secret": SECRETS[0],
        "tenant_id": "1000001",
        "access_token": SECRETS[1],
        "refresh_token": SECRETS[2],
    }
    values.update(changes)
    return VismaNetAccount(**values)


def _nmbrs(**changes: object) -> NmbrsAccount:
    values: dict[str, object] = {
        "client_id": "client-2",
        "client_secret": SECRETS[0],
        "subscription_key": SECRETS[3],
        "access_token": SECRETS[1],
        "refresh_token": SECRETS[2],
    }
    values.update(changes)
    return NmbrsAccount(**values)


@pytest.mark.parametrize("make", [_visma, _nmbrs])
def test_no_secret_in_repr_str_or_json(make) -> None:
    account = make()
    for text in (repr(account), str(account), account.model_dump_json(), str(account.model_dump())):
        for secret in SECRETS:
            assert secret not in text


def test_the_blocks_are_registered_by_slug() -> None:
    assert Block.get_block_class_from_key("visma-net-account") is VismaNetAccount
    assert Block.get_block_class_from_key("nmbrs-account") is NmbrsAccount
    assert Block.get_block_class_from_key("nmbrs-visma-administration-mapping") is AdministrationMappingBlock


def test_the_package_is_a_prefect_collection() -> None:
    from importlib.metadata import entry_points

    values = {entry.name: entry.value for entry in entry_points(group="prefect.collections")}
    assert values.get("nmbrs_visma") == "nmbrs_visma.blocks"  # the blocks, not the package: --help stays light


def test_the_auth_follows_the_grant_type_and_scopes() -> None:
    service = _visma().get_auth()
    assert service.flow == "service" and service.tenant_id == "1000001"
    assert all(scope.startswith("vismanet_erp_service_api:") for scope in service.scopes)
    interactive = _visma(grant_type="authorization_code").get_auth()
    assert interactive.flow == "interactive"
    assert "offline_access" in interactive.scopes
    assert _visma(scopes=["custom"]).get_auth().scopes == ("custom",)
    assert "offline_access" in _nmbrs().scopes


def test_apply_token_restarts_the_refresh_clock_only_on_rotation() -> None:
    account = _nmbrs(refresh_token=None)
    account.apply_token({"access_token": "a1", "expires_in": 3600, "refresh_token": "r1"})
    first_issue = account.refresh_token_issued_at
    assert first_issue is not None
    assert account.access_token_valid(margin=dt.timedelta(minutes=59))
    assert not account.access_token_valid(margin=dt.timedelta(minutes=61))
    assert account.refresh_token_expires_at == first_issue + dt.timedelta(days=30)

    account.apply_token({"access_token": "a2", "expires_in": 3600, "refresh_token": "r1"})  # re-used, not rotated
    assert account.refresh_token_issued_at == first_issue
    account.apply_token({"access_token": "a3", "expires_at": 2_000_000_000, "refresh_token": "r2"})
    assert account.refresh_token is not None and account.refresh_token.get_secret_value() == "r2"
    assert account.refresh_token_issued_at is not None and account.refresh_token_issued_at >= first_issue
    assert account.access_token_expires_at == dt.datetime.fromtimestamp(2_000_000_000, dt.UTC)


def test_token_dict_is_authlib_shaped() -> None:
    expires = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    token = _visma(access_token_expires_at=expires).token_dict()
    assert token == {
        "token_type": "Bearer",
        "access_token": SECRETS[1],
        "refresh_token": SECRETS[2],
        "expires_at": int(expires.timestamp()),
    }
    assert _visma(access_token=None, refresh_token=None).token_dict() is None


def test_secrets_round_trip_through_prefect(clean_blocks: None) -> None:
    _nmbrs().save("bureau")
    loaded = NmbrsAccount.load("bureau")
    assert loaded.client_secret.get_secret_value() == SECRETS[0]
    assert loaded.subscription_key.get_secret_value() == SECRETS[3]
    assert loaded.refresh_token is not None and loaded.refresh_token.get_secret_value() == SECRETS[2]


def test_store_token_saves_a_rotated_pair_at_once(clean_blocks: None) -> None:
    _visma(grant_type="authorization_code").save("main")
    account = VismaNetAccount.load("main")
    account.store_token({"access_token": "new-access", "expires_in": 3600, "refresh_token": "new-refresh"})

    reloaded = VismaNetAccount.load("main")
    assert reloaded.access_token is not None and reloaded.access_token.get_secret_value() == "new-access"
    assert reloaded.refresh_token is not None and reloaded.refresh_token.get_secret_value() == "new-refresh"
    assert reloaded.refresh_token_issued_at is not None
    assert reloaded.access_token_valid(margin=dt.timedelta(minutes=50))


def test_mapping_block_mirrors_the_domain_mapping() -> None:
    mapping = AdministrationMapping(
        nmbrs_company=1002,
        visma_account="main",
        branch="2",
        ledger="L",
        cost_center=DimensionSetting(enabled=True, description="Department"),
        cost_unit=DimensionSetting(enabled=True, description="Project"),
        account_translation={"4000": "4001"},
        debtor_blocked=True,
        closed_period_policy=ClosedPeriodPolicy.NEXT_OPEN,
        release=True,
    )
    block = AdministrationMappingBlock.from_mapping(mapping, nmbrs_account="bureau")
    assert block.nmbrs_account == "bureau"
    assert block.to_mapping() == mapping
    # every field of the domain model is a field of the block, so a UI edit reaches the pipeline
    assert set(AdministrationMapping.model_fields) <= set(AdministrationMappingBlock.model_fields)


def test_load_mappings_refuses_a_company_mapped_twice(clean_blocks: None) -> None:
    for company in (1001, 1002, 1003, 1004):
        AdministrationMappingBlock(nmbrs_company=company, visma_account="main", branch="1", ledger="L").save(
            mapping_block_name(company)
        )
    AdministrationMappingBlock(nmbrs_company=1003, visma_account="other", branch="1", ledger="L").save("bakkerij-oost")

    loaded = load_mappings()
    assert loaded.companies == [1001, 1002, 1004]
    assert loaded.mappings[1002].visma_account == "main"
    assert loaded.block_names[1004] == "company-1004"
    assert loaded.duplicates == {1003: ("bakkerij-oost", "company-1003")}
    (refusal,) = loaded.refusals()
    assert refusal.code == "duplicate_mapping"
    assert refusal.company == 1003
    assert "bakkerij-oost" in refusal.message and "company-1003" in refusal.message


def test_load_mappings_when_nothing_is_mapped(clean_blocks: None) -> None:
    assert load_mappings().mappings == {}
