"""The deterministic posting key: what makes "exactly once" checkable in Visma.net.

One key per (Nmbrs company, run, financial period, Visma.net administration). It is written into the journal
transaction's description as `[nv:<key>]`, so before posting the pipeline lists that period's transactions
and skips a key already there, even when the previous attempt's response was lost.
"""

from __future__ import annotations

import hashlib
import re

from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference

KEY_VERSION = "nv1"
KEY_LENGTH = 20  # hex digits: 80 bits, collision-free for any realistic number of postings
_KEY = re.compile(rf"[0-9a-f]{{{KEY_LENGTH}}}")
_MARKER = re.compile(rf"\[nv:({_KEY.pattern})\]")


def administration_id(tenant_id: str, branch: str, ledger: str) -> str:
    """`"{tenant}/{branch}/{ledger}"`: the Visma.net administration a mapping posts to."""
    for name, value in (("tenant_id", tenant_id), ("branch", branch), ("ledger", ledger)):
        if not value or "/" in value:
            raise ValueError(f"administration {name} {value!r} must be non-empty and without '/'")
    return f"{tenant_id}/{branch}/{ledger}"


def mapping_administration_id(mapping: AdministrationMapping, reference: AdministrationReference) -> str:
    """The administration id of a mapping, with the tenant Visma.net reported for its account."""
    return administration_id(reference.tenant_id, mapping.branch, mapping.ledger)


def posting_key(company_number: int, run_id: str, period_id: str, administration: str) -> str:
    """Stable across processes and versions of Python: sha256 over the four parts, length-prefixed."""
    if not re.fullmatch(r"\d{6}", period_id):
        raise ValueError(f"financial period {period_id!r} is not YYYYPP")
    parts = [KEY_VERSION, str(int(company_number)), run_id, period_id, administration]
    text = "".join(f"{len(part)}:{part};" for part in parts)  # length-prefixed: no two tuples share a text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return digest[:KEY_LENGTH]


def key_marker(key: str) -> str:
    """The marker written into a transaction's description: `[nv:<key>]`."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a posting key: {key!r}")
    return f"[nv:{key}]"


def extract_key(description: str | None) -> str | None:
    """The posting key in a transaction description, or None when it carries no marker (or several)."""
    found = set(_MARKER.findall(description or ""))
    return found.pop() if len(found) == 1 else None
