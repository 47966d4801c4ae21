"""Read what Visma.net holds for a tenant (periods, subaccount segments, accounts) once per run.

Why once: every company mapped to the tenant is checked and mapped against the same reference, so a bureau's
thousand companies in one administration cost three reads, not three thousand. The first company of a tenant
reads it inside its administration's preparation (flows/administrations.py), the others wait for that read
and share it; a read that fails is remembered for the run, so each of the tenant's companies fails with the
same reason without asking again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, Refusal

if TYPE_CHECKING:
    from nmbrs_visma.clients.visma_net import VismaNetClient

ReferenceKey = tuple[str, str]  # (Visma.net account, subaccount dimension): what one reference read covers


def reference_key(mapping: AdministrationMapping) -> ReferenceKey:
    return mapping.visma_account, mapping.subaccount_dimension


class ReferenceUnavailable(Exception):
    """A tenant's reference data could not be read; `refusal` is the reason each of its companies gets."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def read_reference(client: VismaNetClient, tenant_id: str, dimension_id: str = "SUBACCOUNT") -> AdministrationReference:
    """Financial periods, the subaccount dimension's segments with their values, and the ledger accounts."""
    reference = client.reference(dimension_id)
    if not reference.tenant_id and tenant_id:
        reference = reference.model_copy(update={"tenant_id": tenant_id})
    return reference


class References:
    """The run's reference data per (account, dimension), read on first need. Thread-safe."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[ReferenceKey, threading.Lock] = {}
        self._known: dict[ReferenceKey, AdministrationReference | Refusal] = {}

    def get(self, key: ReferenceKey, client: VismaNetClient, tenant_id: str) -> AdministrationReference:
        """The reference of `key`, read now unless known; `ReferenceUnavailable` when it cannot be read."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one read per key; the tenant's other companies wait for it
            if key not in self._known:
                self._known[key] = self._read(key, client, tenant_id)
            known = self._known[key]
        if isinstance(known, Refusal):
            raise ReferenceUnavailable(known)
        return known

    def forget(self, key: ReferenceKey) -> None:
        """Drop `key`'s reference once no company of the run needs it: a run's memory stays flat in tenants."""
        with self._guard:
            self._locks.pop(key, None)
            self._known.pop(key, None)

    @staticmethod
    def _read(key: ReferenceKey, client: VismaNetClient, tenant_id: str) -> AdministrationReference | Refusal:
        account, dimension = key
        try:
            return read_reference(client, tenant_id, dimension)
        except Exception as exc:  # any failure: the tenant's companies are reported, the others go on
            return Refusal(
                code="not_authorised",
                message=f"Visma.net account '{account}': reading financial periods, accounts and "
                f"dimension {dimension} failed: {exc}",
            )
