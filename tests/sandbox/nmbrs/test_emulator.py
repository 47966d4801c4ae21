"""The emulator itself: its identity server, its switches, and the journals it generates."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal

import httpx2
import pytest

from nmbrs_visma.sandbox.demo_data import COMPANIES, DEMO_PERIOD, DEMO_YEAR
from nmbrs_visma.sandbox.nmbrs import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    DEMO_SUBSCRIPTION_KEY,
    JOURNAL_KINDS,
    NmbrsWorld,
    expected_lines,
)
from nmbrs_visma.sandbox.nmbrs.ledger import balance

VERIFIER = "a-verifier-of-enough-length-for-pkce-0123456789-abcdefghijklmnop"
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


def authorize(url: str, **overrides: str) -> httpx2.Response:
    params = {
        "client_id": DEMO_CLIENT_ID,
        "redirect_uri": DEMO_REDIRECT_URI,
        "response_type": "code",
        "scope": "company.info.read offline_access",
        "state": "s1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **overrides,
    }
    return httpx2.get(f"{url}/connect/authorize", params=params, follow_redirects=False)


def exchange(url: str, code: str, verifier: str = VERIFIER) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": DEMO_REDIRECT_URI}
    data["code_verifier"] = verifier
    return httpx2.post(f"{url}/connect/token", data=data, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))


def code_of(response: httpx2.Response) -> str:
    assert response.status_code == 302, response.text
    return httpx2.URL(response.headers["location"]).params["code"]


def test_pkce_verifier_must_match_and_codes_work_once(server) -> None:
    code = code_of(authorize(server.url))
    assert exchange(server.url, code, verifier="x" * 64).json()["error"] == "invalid_grant"
    code = code_of(authorize(server.url))
    assert "refresh_token" in exchange(server.url, code).json()
    assert exchange(server.url, code).json()["error"] == "invalid_grant"


def test_authorize_refuses_unregistered_redirects_and_plain_pkce(server) -> None:
    refused = authorize(server.url, redirect_uri="https://evil.example/cb")
    assert refused.status_code == 400 and "location" not in refused.headers
    plain = authorize(server.url, code_challenge_method="plain")
    assert httpx2.URL(plain.headers["location"]).params["error"] == "invalid_request"


def test_token_endpoint_needs_the_client_secret(server) -> None:
    code = code_of(authorize(server.url))
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": DEMO_REDIRECT_URI}
    response = httpx2.post(f"{server.url}/connect/token", data={**data, "code_verifier": VERIFIER}, auth=("x", "y"))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_api_needs_a_bearer_token_besides_the_key(server) -> None:
    response = httpx2.get(f"{server.url}/api/debtors", headers={"X-Subscription-Key": DEMO_SUBSCRIPTION_KEY})
    body = response.json()
    assert response.status_code == 401 and (body["code"], body["title"]) == (40101, "Missing_Token")


def test_latency_switch_delays_api_calls(server, world) -> None:
    world.latency = 0.2
    response = httpx2.get(f"{server.url}/api/debtors")
    assert response.status_code == 401 and response.elapsed.total_seconds() >= 0.2


def test_rate_limit_budget_answers_429_with_retry_after(server, world) -> None:
    world.rate_limit, world.rate_window, world.retry_after = 2, 60.0, 7
    statuses = [httpx2.get(f"{server.url}/api/debtors") for _ in range(3)]
    assert [r.status_code for r in statuses] == [401, 401, 429]
    assert statuses[-1].headers["retry-after"] == "7" and statuses[-1].json()["type"] == "throttlingError"


def test_the_seeded_world_matches_the_demo() -> None:
    world = NmbrsWorld().seed_demo()
    for company in COMPANIES:
        runs = world.runs[company.company_id]
        assert [run.period_end for run in runs] == [1, 2, 3]
        assert runs[-1].locked == company.locked and all(run.locked for run in runs[:-1])
        assert runs[-1].corrections == company.corrections
        assert (runs[-1].run_type == "normal_twk") == bool(company.corrections)


def test_a_world_without_faults_answers_deterministically() -> None:
    first, second = NmbrsWorld().seed_demo(), NmbrsWorld().seed_demo()
    for company_id, runs in first.runs.items():
        for run, again in zip(runs, second.runs[company_id], strict=True):
            assert run == again
            assert first.journal_document(run, "journalscostcenterunit") == second.journal_document(
                again, "journalscostcenterunit"
            )


@pytest.mark.parametrize("company", COMPANIES, ids=lambda c: str(c.number))
def test_every_period_of_every_run_balances_to_the_cent(company) -> None:
    world = NmbrsWorld().seed_demo()
    for run in world.runs[company.company_id]:
        for kind in JOURNAL_KINDS:
            transactions = world.transactions(run, kind)
            assert set(balance(transactions).values()) == {0}
            assert [t.period for t in transactions] == [*sorted(run.corrections), run.period_end]


def test_expected_lines_of_the_demo_are_exact_cents() -> None:
    lines = expected_lines(1003, DEMO_YEAR, DEMO_PERIOD)
    assert {key[0] for key in lines} == {"202601", "202602", "202603"}
    assert all(isinstance(cents, int) for cents in lines.values())
    assert any(cents < 0 for cents in lines.values())  # the February correction lowers wages
    debit = sum(c for k, c in lines.items() if k[4] == "debit")
    credit = sum(c for k, c in lines.items() if k[4] == "credit")
    assert debit == credit and Decimal(debit) / 100 > 0


def test_kinds_differ_only_in_dimension_detail() -> None:
    world = NmbrsWorld().seed_demo()
    by_kind = {kind: world.expected_lines(1002, DEMO_YEAR, DEMO_PERIOD, kind) for kind in JOURNAL_KINDS}
    assert all(key[2] == key[3] == "" for key in by_kind["journals"])
    assert any(key[2] and not key[3] for key in by_kind["journalscostcenter"])
    assert any(key[2] and key[3] for key in by_kind["journalscostcenterunit"])
    per_account = {
        kind: {
            (k[0], k[1], k[4]): sum(c for kk, c in lines.items() if kk[:2] == k[:2] and kk[4] == k[4]) for k in lines
        }
        for kind, lines in by_kind.items()
    }
    assert per_account["journals"] == per_account["journalscostcenter"] == per_account["journalscostcenterunit"]
