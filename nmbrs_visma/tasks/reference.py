"""Read what Visma.net holds for a tenant (periods, subaccount segments, accounts) once per run.

Why once: every company mapped to the tenant is checked and mapped against the same reference, so a bureau's
thousand companies in one administration cost three reads, not three thousand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from nmbrs_visma.journals.models import AdministrationReference

if TYPE_CHECKING:
    from nmbrs_visma.clients.visma_net import VismaNetClient


@task(
    name="read-visma-reference",
    task_run_name="read-reference-{account}-{dimension_id}",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
)
def read_reference(
    account: str, client: VismaNetClient, tenant_id: str, dimension_id: str = "SUBACCOUNT"
) -> AdministrationReference:
    """Financial periods, the subaccount dimension's segments with their values, and the ledger accounts."""
    reference = client.reference(dimension_id)
    if not reference.tenant_id and tenant_id:
        reference = reference.model_copy(update={"tenant_id": tenant_id})
    return reference
