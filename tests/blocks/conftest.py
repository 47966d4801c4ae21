"""A throwaway Prefect API for the block, config and token tests (one per test session of this folder)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def clean_blocks(prefect_api: str) -> Iterator[None]:
    """No account or mapping block and no token lock exists when the test starts."""
    from prefect.client.orchestration import get_client

    from nmbrs_visma.blocks import AdministrationMappingBlock, NmbrsAccount, VismaNetAccount
    from nmbrs_visma.blocks.listing import read_named_blocks

    with get_client(sync_client=True) as client:
        for block_type in (VismaNetAccount, NmbrsAccount, AdministrationMappingBlock):
            for _, block in read_named_blocks(block_type):
                client.delete_block_document(block._block_document_id)
        for limit in client.read_global_concurrency_limits(limit=200):
            if limit.name.startswith("nmbrs-visma-token-"):
                client.delete_global_concurrency_limit_by_name(limit.name)
    yield


@pytest.fixture(scope="session")
def sandboxes():
    """Both emulators (Visma.net + Visma Connect, Nmbrs + identity), seeded with the demo world, over real HTTP."""
    from nmbrs_visma.sandbox.serve import running_sandboxes

    with running_sandboxes() as running:
        yield running


ENV = {
    "TEST_VISMA_SERVICE_SECRET": "nv-demo-service-secret-0f3a9c",
    "TEST_VISMA_INTERACTIVE_SECRET": "nv-demo-interactive-secret-7b21e4",
    "TEST_NMBRS_SECRET": "demo-client-secret-not-for-production",
    "TEST_NMBRS_KEY": "0d3m0-subscription-key-5a11b0x",
}


def sandbox_config(visma_url: str, nmbrs_url: str, *, redirect_uri: str | None = None) -> dict:
    """A configuration of the emulators: a Visma.net service and interactive account, one Nmbrs account."""
    from nmbrs_visma.sandbox.nmbrs.world import DEMO_CLIENT_ID
    from nmbrs_visma.sandbox.visma_net.world import INTERACTIVE_CLIENT_ID, SERVICE_CLIENT_ID

    visma_urls = {
        "base_url": visma_url,
        "token_url": f"{visma_url}/connect/token",
        "authorize_url": f"{visma_url}/connect/authorize",
    }
    nmbrs: dict = {
        "base_url": nmbrs_url,
        "token_url": f"{nmbrs_url}/connect/token",
        "authorize_url": f"{nmbrs_url}/connect/authorize",
        "client_id": DEMO_CLIENT_ID,
        "client_secret_env": "TEST_NMBRS_SECRET",
        "subscription_key_env": "TEST_NMBRS_KEY",
        "scopes": ["debtor.info.read", "company.info.read", "company.document.read", "document.read", "offline_access"],
    }
    interactive: dict = {
        **visma_urls,
        "grant_type": "authorization_code",
        "client_id": INTERACTIVE_CLIENT_ID,
        "client_secret_env": "TEST_VISMA_INTERACTIVE_SECRET",
    }
    if redirect_uri:
        nmbrs["redirect_uri"] = redirect_uri
        interactive["redirect_uri"] = redirect_uri
    return {
        "visma_net": {
            "accounts": {
                "service": {
                    **visma_urls,
                    "client_id": SERVICE_CLIENT_ID,
                    "client_secret_env": "TEST_VISMA_SERVICE_SECRET",
                    "tenant_id": "1000001",
                },
                "interactive": interactive,
            }
        },
        "nmbrs": {"accounts": {"default": nmbrs}},
        "companies": [{"nmbrs_company": 1001, "visma_account": "service", "branch": "1", "ledger": "L"}],
    }
