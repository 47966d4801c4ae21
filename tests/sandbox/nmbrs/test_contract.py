"""Contract tests: every request the client sends and every answer the emulator gives, for every path used,
validated against the published Nmbrs spec (../shared/reference/nmbrs/nmbrs-openapi.yaml)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.errors import ApiError
from nmbrs_visma.clients.nmbrs import DEFAULT_SCOPES, JOURNAL_KINDS, NmbrsClient, NmbrsCompany
from nmbrs_visma.sandbox.demo_data import DEMO_YEAR
from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
from tests.support import make_client

from .spec import USED_PATHS, check_exchange

pytestmark = pytest.mark.contract


def drive_every_path(client: NmbrsClient, world: NmbrsWorld) -> None:
    """A session touching every path the pipeline uses, answers good and bad."""
    for debtor in client.debtors():
        for company in client.companies(debtor.debtor_id):
            client.current_period(company.company_id)
            runs = client.runs(company, DEMO_YEAR)
            if company.number in (1002, 1003):
                for kind in JOURNAL_KINDS:
                    client.journal_xml(runs[-1], kind=kind)
    ghost = NmbrsCompany(company_id="00000000-0000-4000-8000-000000000000", number=9)
    with pytest.raises(ApiError):
        client.runs(ghost, DEMO_YEAR)  # 404
    with pytest.raises(ApiError):
        client._json(f"/api/companies/{next(iter(world.companies))}/runs", {"year": "x"}, "runs")  # 400
    world.fail_next(1, 429)
    world.fail_next(4, 503)
    with pytest.raises(ApiError):
        client.debtors()


def test_client_requests_and_emulator_answers_keep_the_spec(spec, server, auth, world, sleeps) -> None:
    with make_client(server, auth, sleep=sleeps) as client:
        drive_every_path(client, world)
        with (
            make_client(server, auth, subscription_key=SecretStr("not-the-key-0000")) as bad,
            pytest.raises(ApiError),
        ):
            bad.debtors()  # 401
    exchanges = world.calls("/api/")
    seen = {check_exchange(exchange, spec) for exchange in exchanges}
    assert seen == USED_PATHS
    statuses = {exchange.status for exchange in exchanges}
    assert {200, 202, 400, 401, 404, 429, 503} <= statuses


def test_the_global_company_list_refuses_multi_debtor_consent_in_the_specs_shape(spec, server, auth, world) -> None:
    with make_client(server, auth) as client, pytest.raises(ApiError, match="40303"):
        client._json("/api/companies", None, "all companies")
    exchange = world.calls("/api/companies")[-1]
    assert check_exchange(exchange, spec) == "/api/companies" and exchange.status == 403


def test_requested_scopes_cover_every_operation_used(spec, auth) -> None:
    declared = set(spec["components"]["securitySchemes"]["Bearer"]["flows"]["authorizationCode"]["scopes"])
    assert set(DEFAULT_SCOPES) <= declared
    for template in USED_PATHS:
        operation = spec["paths"][template]["get"]
        alternatives = {scope for requirement in operation["security"] for scope in requirement.get("Bearer", [])}
        assert alternatives & set(DEFAULT_SCOPES), f"{template} needs one of {sorted(alternatives)}"
    request = auth.authorization_request()
    assert "code_challenge_method=S256" in request.url and "offline_access" in request.url
