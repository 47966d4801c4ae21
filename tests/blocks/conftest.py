"""A throwaway Prefect API for the block, config and token tests (one per test session of this folder)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A Prefect server on a temporary SQLite database; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield str(PREFECT_API_URL.value())


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
