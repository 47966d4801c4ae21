"""A posting's identity and content, and the marker that carries both into Visma.net.

Identity (`posting_key`): what the journal *is*, never where or how it was sent: the Nmbrs company, the payroll
run (payroll year, the run's payroll period and its run number: the same values from the API and from a
journal file), the payroll period its lines belong to, and the administration. A closed-period move changes
where lines are booked, never the key; a command-line argument never enters it.

Content (`fingerprint`): the exact lines booked under a key (account, subaccount, side, amount to the cent), with
the company and payroll period, so equal content under two identities (a file and the API, two run numbers) is
recognised, and a key whose content changed since it was sent is told apart from one already sent.

Both are written into the transaction's description as `[nv:<key>:<fingerprint>]`; the look-up before each
create reads them back from the period's listing, so exactly once holds even when no local record survives.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference

KEY_VERSION = "nv2"
KEY_LENGTH = 20  # hex digits: 80 bits, collision-free for any realistic number of postings
FINGERPRINT_LENGTH = 16  # hex digits: 64 bits over one key's content
_MARKER = re.compile(rf"\[nv:([0-9a-f]{{{KEY_LENGTH}}}):([0-9a-f]{{{FINGERPRINT_LENGTH}}})\]")
_PERIOD = re.compile(r"\d{6}")


class Marker(NamedTuple):
    """What a transaction's description says it is: its posting key and its content's fingerprint."""

    key: str
    fingerprint: str

    def __str__(self) -> str:
        return f"[nv:{self.key}:{self.fingerprint}]"


def administration_id(tenant_id: str, branch: str, ledger: str) -> str:
    """`"{tenant}/{branch}/{ledger}"`: the Visma.net administration a mapping posts to."""
    for name, value in (("tenant_id", tenant_id), ("branch", branch), ("ledger", ledger)):
        if not value or "/" in value:
            raise ValueError(f"administration {name} {value!r} must be non-empty and without '/'")
    return f"{tenant_id}/{branch}/{ledger}"


def mapping_administration_id(mapping: AdministrationMapping, reference: AdministrationReference) -> str:
    """The administration id of a mapping, with the tenant Visma.net reported for its account."""
    return administration_id(reference.tenant_id, mapping.branch, mapping.ledger)


def _digest(parts: list[str], length: int) -> str:
    text = "".join(f"{len(part)}:{part};" for part in parts)  # length-prefixed: no two tuples share a text
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def posting_key(
    company_number: int, year: int, run_period: int, run_number: int, payroll_period: str, administration: str
) -> str:
    """The identity of one run's lines of one payroll period in one administration; stable across processes,
    machines and versions of Python (sha256 over the length-prefixed parts). `run_number` is the run's place
    among the runs of its period (`PayrollRun.sequence`), which the API and a journal file both know."""
    if not _PERIOD.fullmatch(payroll_period):
        raise ValueError(f"payroll period {payroll_period!r} is not YYYYPP")
    parts = [KEY_VERSION, str(int(company_number)), str(int(year)), str(int(run_period)), str(int(run_number))]
    return _digest([*parts, payroll_period, administration], KEY_LENGTH)


def reversal_key(key: str, fingerprint: str) -> str:
    """The key of the transaction that reverses the content `fingerprint` sent under `key`."""
    return _digest([KEY_VERSION, "reversal", key, fingerprint], KEY_LENGTH)


def reversal_fingerprint(fingerprint: str) -> str:
    """The fingerprint of a reversal: its lines are the reversed content's, sides swapped."""
    return _digest([KEY_VERSION, "reversed", fingerprint], FINGERPRINT_LENGTH)


def fingerprint(company_number: int, payroll_period: str, lines: list[str]) -> str:
    """The content of one key: its rendered lines (account, subaccount, side, amount), in the aggregation's
    order, which is sorted and so the same for the same content from any source."""
    return _digest([KEY_VERSION, str(int(company_number)), payroll_period, "\n".join(lines)], FINGERPRINT_LENGTH)


def key_marker(key: str, content: str) -> str:
    """The marker written into a transaction's description: `[nv:<key>:<fingerprint>]`."""
    marker = Marker(key, content)
    if _MARKER.fullmatch(str(marker)) is None:
        raise ValueError(f"not a posting key and fingerprint: {key!r}, {content!r}")
    return str(marker)


def read_marker(description: str | None) -> Marker | None:
    """The marker in a transaction description, or None when it carries none (or several different ones)."""
    found = {Marker(*match) for match in _MARKER.findall(description or "")}
    return found.pop() if len(found) == 1 else None
