"""Spec audit of the Nmbrs emulator: schemathesis generates requests for every Nmbrs operation the project uses
from the published spec (../shared/reference/nmbrs/nmbrs-openapi.yaml), sends them over real HTTP with a valid
bearer token and subscription key, and checks each answer: no 5xx, a documented status code and content type,
a body inside the response schema.

The spec is used as published (it documents its error statuses, unlike Visma.net's). One narrow exception: a
5xx the emulator gives on purpose (the fault switches) is not drawn here, so any 5xx is a finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis

from nmbrs_visma.sandbox.nmbrs import DEMO_SUBSCRIPTION_KEY, NmbrsWorld
from nmbrs_visma.sandbox.server import RunningServer
from tests.sandbox.spec_audit import audit

from .spec import USED_PATHS, load_spec

pytestmark = [pytest.mark.contract, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def nmbrs_schema(reference_dir: Path) -> Any:
    return schemathesis.openapi.from_dict(load_spec(reference_dir))


def _explicit(path: str, world: NmbrsWorld, task_id: str) -> list[dict[str, Any]]:
    """Requests with identifiers the world holds, so each operation's success path is reached."""
    company = next(iter(world.companies.values()))
    run = world.runs[company.company_id][-1]
    debtor = next(iter(world.debtors))
    ids = {"companyId": company.company_id, "payrollRunId": run.run_id, "debtorId": debtor, "taskId": task_id}
    names = [name for name in ids if "{" + name + "}" in path]
    params = {name: ids[name] for name in names}
    query = {"year": run.year} if path.startswith("/api/companies/{companyId}/runs") else {}
    polls = world.document_polls + 1 if "taskId" in names else 1  # a document answers 202 until it is ready
    return [{"path_parameters": params, "query": query}] * polls if params or query else []


@pytest.mark.parametrize("path", sorted(USED_PATHS))
def test_every_answer_of_the_nmbrs_emulator_conforms_to_the_spec(
    nmbrs_schema: Any, server: RunningServer, world: NmbrsWorld, client: Any, auth: Any, path: str
) -> None:
    company = next(c for c in world.companies.values() if c.number == 1002)
    task_id = client._json(  # a document task to poll: the journal of a real run
        f"/api/companies/{company.company_id}/runs/{world.runs[company.company_id][-1].run_id}/journals",
        {"year": world.runs[company.company_id][-1].year},
        "journals",
    )["taskId"]
    operation = nmbrs_schema[path]["GET"]
    token = auth.access_token().get_secret_value()
    headers = {"Authorization": f"Bearer {token}", "X-Subscription-Key": DEMO_SUBSCRIPTION_KEY}
    findings = audit(operation, server.url, headers, explicit=_explicit(path, world, task_id))
    assert not findings.failures, findings.report(f"GET {path}")
    assert any(200 <= status < 300 for status in findings.statuses), f"no success path reached: {findings.statuses}"
