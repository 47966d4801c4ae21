"""NmbrsClient and NmbrsAuth over real HTTP against the emulator: tokens, paging, polling, faults, totals."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator

import httpx2
import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.errors import (
    AuthError,
    DocumentTimeout,
    NotFound,
    RateLimited,
    ResponseError,
    ServerError,
    ValidationError,
)
from nmbrs_visma.clients.nmbrs import JOURNAL_KINDS, NmbrsClient, NmbrsCompany, journal_kind
from nmbrs_visma.journals.models import PayrollRun
from nmbrs_visma.sandbox.demo_data import COMPANIES, DEBTORS, DEMO_PERIOD, DEMO_YEAR
from nmbrs_visma.sandbox.nmbrs import DEMO_CLIENT_SECRET, DEMO_SUBSCRIPTION_KEY
from tests.support import (
    Sleeps,
    TokenLog,
    connect,
    demo_company,
    frame_totals,
    make_auth,
    make_client,
    nmbrs_company,
)


def march_run(client: NmbrsClient, number: int) -> PayrollRun:
    return next(run for run in client.runs(nmbrs_company(number), DEMO_YEAR) if run.period_end == DEMO_PERIOD)


# --- tokens ---------------------------------------------------------------------------------------------------


def test_connect_hands_the_first_pair_to_on_token_and_reports_30_days(auth, tokens: TokenLog) -> None:
    assert len(tokens) == 1
    assert tokens[0]["access_token"] and tokens[0]["refresh_token"]
    assert 29.9 < auth.refresh_token_days_left <= 30
    assert tokens[0]["refresh_token"] not in repr(auth) and tokens[0]["access_token"] not in repr(auth)


def test_expired_access_token_is_refreshed_and_the_rotated_pair_saved_at_once(server, world, tokens) -> None:
    now = [1_000_000.0]
    auth = make_auth(server, tokens, clock=lambda: now[0])
    connect(auth)
    with make_client(server, auth) as client:
        client.debtors()
        assert len(tokens) == 1
        now[0] += 3600  # past the access token's lifetime (client-side clock)
        client.debtors()
    assert len(tokens) == 2
    first, second = tokens
    assert second["refresh_token"] != first["refresh_token"]
    assert world.refresh_tokens[first["refresh_token"]].used  # the old one is dead on the server
    assert not world.refresh_tokens[second["refresh_token"]].used


def test_a_401_refreshes_once_and_the_call_succeeds(client, world, tokens) -> None:
    world.access_tokens.clear()  # the server forgets every access token (e.g. revoked)
    assert [d.number for d in client.debtors()] == [d.number for d in DEBTORS]
    assert len(tokens) == 2


def test_a_refresh_token_works_once(server, tokens) -> None:
    auth = make_auth(server, tokens)
    connect(auth)
    saved = dict(tokens[0])
    auth.renew()
    stale = make_auth(server, token=saved)  # a second process still holding the old pair
    with pytest.raises(AuthError, match="works once") as caught:
        stale.renew()
    assert saved["refresh_token"] not in str(caught.value)


def test_a_refresh_token_unused_for_30_days_is_refused_without_a_call(server, world, tokens) -> None:
    now = [1_000_000.0]
    auth = make_auth(server, tokens, clock=lambda: now[0])
    connect(auth)
    now[0] += 31 * 86_400
    assert auth.refresh_token_days_left < 0
    calls = len(world.exchanges)
    with pytest.raises(AuthError, match="expired") as caught:
        auth.access_token()
    assert len(world.exchanges) == calls
    assert isinstance(caught.value, AuthError)


def test_the_server_refuses_an_expired_refresh_token(server, world, tokens) -> None:
    world.refresh_token_lifetime = 0.0
    auth = make_auth(server, tokens)
    connect(auth)
    with pytest.raises(AuthError, match="invalid_grant"):
        auth.renew()


def test_state_mismatch_is_refused(server) -> None:
    from nmbrs_visma.sandbox.nmbrs import approve_authorization

    auth = make_auth(server)
    request = auth.authorization_request()
    callback = approve_authorization(request.url).replace(request.state, "forged")
    with pytest.raises(AuthError, match="state"):
        auth.complete_authorization(callback, request)
    assert not auth.has_token


def test_wrong_subscription_key_is_a_typed_auth_error_and_spends_no_refresh_token(server, auth, tokens) -> None:
    bad_key = SecretStr("wrong-key-123456")
    with (
        make_client(server, auth, subscription_key=bad_key) as client,
        pytest.raises(AuthError, match="40103") as caught,
    ):
        client.debtors()
    assert caught.value.status == 401
    assert len(tokens) == 1  # the key's 401 is not the token's: no rotation


# --- listings -------------------------------------------------------------------------------------------------


def test_companies_are_listed_per_debtor_never_globally(client, world) -> None:
    numbers = {}
    for debtor in client.debtors():
        numbers[debtor.number] = sorted(c.number for c in client.companies(debtor.debtor_id))
    assert numbers == {"101": [1001, 1002, 1003, 1004, 1005, 1006], "102": [2001]}
    assert not [e for e in world.calls() if e.path == "/api/companies"]


def test_every_page_is_read(client, world) -> None:
    world.max_page_size = 1
    debtor = client.debtors()[0]
    assert len(client.companies(debtor.debtor_id)) == 6
    runs = client.runs(nmbrs_company(1003), DEMO_YEAR)
    assert [r.run_number for r in runs] == [1, 2, 3]
    run_pages = [e for e in world.calls() if e.path.endswith("/runs")]
    assert len(run_pages) == 3 and all("pageNumber=" in e.query for e in run_pages)


def test_runs_carry_numbers_periods_and_locks(client) -> None:
    runs = client.runs(nmbrs_company(1005), DEMO_YEAR)
    assert [(r.run_number, r.period_start, r.period_end, r.locked) for r in runs] == [
        (1, 1, 1, True),
        (2, 2, 2, True),
        (3, 3, 3, False),
    ]
    assert {r.company_number for r in runs} == {1005}
    assert client.runs(nmbrs_company(1005), DEMO_YEAR - 1) == []


def test_current_period(client) -> None:
    assert client.current_period(nmbrs_company(1001).company_id) == (DEMO_YEAR, DEMO_PERIOD)


def test_unknown_company_is_not_found(client) -> None:
    ghost = NmbrsCompany(company_id="00000000-0000-4000-8000-000000000000", number=9)
    with pytest.raises(NotFound, match="40404"):
        client.runs(ghost, DEMO_YEAR)


def test_invalid_parameter_names_it(client) -> None:
    with pytest.raises(ValidationError, match="year"):
        client._json(f"/api/companies/{nmbrs_company(1001).company_id}/runs", {"year": "twenty"}, "runs")


# --- documents ------------------------------------------------------------------------------------------------


def test_document_is_polled_through_202s(server, auth, world, sleeps: Sleeps) -> None:
    world.document_polls = 3
    with make_client(server, auth, sleep=sleeps, poll_interval=0.5, max_poll_interval=1.0) as client:
        data = client.journal_xml(march_run(client, 1001))
    assert data.lstrip().startswith(b"<?xml")
    assert len([e for e in world.calls("/api/documents/") if e.status == 202]) == 3
    assert sleeps == [0.5, 0.75, 1.0]  # growing, capped


def test_a_task_that_never_finishes_times_out_clearly(server, auth, world) -> None:
    world.never_finish = True
    now = [0.0]
    sleeps = Sleeps()

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with make_client(
        server, auth, sleep=sleep, clock=lambda: now[0], poll_interval=1.0, max_poll_interval=2.0
    ) as client:
        run = march_run(client, 1003)
        with pytest.raises(DocumentTimeout) as caught:
            client.journal_xml(run, max_wait=10.0)
    text = str(caught.value)
    task_id = next(iter(world.tasks))
    assert "company 1003" in text and f"run {run.run_number}" in text and task_id in text and "10s" in text
    assert sum(sleeps) <= 10.0


# --- faults ---------------------------------------------------------------------------------------------------


def test_429_is_waited_out_as_retry_after_says(server, auth, world, sleeps: Sleeps) -> None:
    world.retry_after = 2
    world.fail_next(2, 429)
    with make_client(server, auth, sleep=sleeps) as client:
        assert len(client.debtors()) == 2
    assert any(1.9 <= seconds <= 2.0 for seconds in sleeps)  # Retry-After, less the time already spent


def test_429_beyond_the_budget_is_a_typed_error(server, auth, world, sleeps: Sleeps) -> None:
    world.fail_next(10, 429)
    with make_client(server, auth, sleep=sleeps) as client, pytest.raises(RateLimited) as caught:
        client.debtors()
    assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 1.0
    assert caught.value.code == "42908"


def test_5xx_is_retried_for_reads(client, world) -> None:
    world.fail_next(2, 503)
    assert len(client.debtors()) == 2


def test_persistent_5xx_is_a_typed_error_in_the_specs_words(client, world) -> None:
    world.fail_next(10, 502)
    with pytest.raises(ServerError, match="Bad_Gateway") as caught:
        client.debtors()
    assert isinstance(caught.value, ServerError) and caught.value.status == 502


# --- journals of every seeded run ---------------------------------------------------------------------------


def test_every_seeded_run_parses_to_the_totals_the_emulator_generated(server, auth, world) -> None:
    world.server_error_rate = 0.1  # flaky, yet nothing is lost
    world.document_polls = 1
    with make_client(server, auth) as client:
        seen = 0
        for debtor in client.debtors():
            for found in client.companies(debtor.debtor_id):
                for run in client.runs(found, DEMO_YEAR):
                    for kind in JOURNAL_KINDS:
                        frame = client.journals(run, kind=kind)
                        expected = world.expected_lines(found.number, run.year, run.period_end, kind)
                        assert frame_totals(frame) == expected, (found.number, run.run_number, kind)
                        seen += 1
    assert seen == len(COMPANIES) * DEMO_PERIOD * len(JOURNAL_KINDS)


def test_a_march_run_with_corrections_holds_three_periods_with_negative_values(client) -> None:
    frame = client.journals(march_run(client, 1003))
    assert sorted(frame["period_id"].unique()) == ["202601", "202602", "202603"]
    assert (frame["debit_cents"] < 0).any()
    for _period, part in frame.groupby("period_id"):
        assert part["debit_cents"].sum() == part["credit_cents"].sum()


def test_cost_lines_carry_cost_center_and_unit(client) -> None:
    kind = journal_kind(cost_center=True, cost_unit=True)
    frame = client.journals(march_run(client, 1002), kind=kind)
    costs = frame[frame["account"].str.startswith("4")]
    liabilities = frame[~frame["account"].str.startswith("4")]
    assert set(costs["cost_center"]) == {"100", "200"} and set(costs["cost_unit"]) == {"1", "2"}
    assert set(liabilities["cost_center"]) == {""} and set(liabilities["cost_unit"]) == {""}


# --- secrets --------------------------------------------------------------------------------------------------


def test_no_secret_in_logs_errors_or_reprs(server, world, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = TokenLog()
    auth = make_auth(server, tokens)
    connect(auth)
    errors: list[BaseException] = []
    with make_client(server, auth) as client:
        client.journals(march_run(client, 1001))
        world.access_tokens.clear()
        client.debtors()  # 401 -> refresh
        world.fail_next(4, 503)  # every attempt the retry policy allows
        with pytest.raises(ServerError) as server_error:
            client.debtors()
        errors.append(server_error.value)
        with (
            make_client(server, auth, subscription_key=SecretStr("bad-key-xyz-123")) as bad,
            pytest.raises(AuthError) as auth_error,
        ):
            bad.debtors()
        errors.append(auth_error.value)
        texts = [caplog.text, repr(auth), repr(client), *map(str, errors), *map(repr, errors)]
    secrets = {DEMO_CLIENT_SECRET, DEMO_SUBSCRIPTION_KEY}
    for token in tokens:
        secrets |= {token["access_token"], token["refresh_token"]}
    assert len(tokens) == 2  # connect, and the refresh after the token 401 (not after the bad key's 401)
    for text in texts:
        for secret in secrets:
            assert secret not in text


# --- the document size cap --------------------------------------------------------------------------------------


class CountingTransport(httpx2.HTTPTransport):
    """Counts the response bytes the client pulls off the wire (so a test sees how much a reader held)."""

    def __init__(self) -> None:
        super().__init__()
        self.pulled: dict[str, int] = defaultdict(int)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        path, stream = request.url.path, response.stream

        class Counting(httpx2.SyncByteStream):
            def __iter__(inner) -> Iterator[bytes]:
                for chunk in stream:
                    self.pulled[path] += len(chunk)
                    yield chunk

            def close(inner) -> None:
                stream.close()

        response.stream = Counting()
        return response


def test_an_oversized_document_is_refused_while_it_streams_in(server, auth, world) -> None:
    """A 32 MiB journal against a 256 KiB cap: refused with the company and run named, after reading about
    the cap (never the whole document), and the emulator stops serving soon after the client hangs up."""
    cap, chunk = 256 * 1024, 64 * 1024
    world.document_polls = 0
    world.document_chunk = chunk
    demo = demo_company(1001)
    huge = b"<transactions>" + b"<!-- padding -->" * (32 * 1024 * 1024 // 16) + b"</transactions>"
    world.documents[demo.number] = huge
    transport = CountingTransport()
    with make_client(server, auth, max_document_bytes=cap, transport=transport) as client:
        run = march_run(client, demo.number)
        with pytest.raises(ResponseError) as info:
            client.journal_xml(run)
    error = info.value
    assert error.code == "document_too_large"
    text = str(error)
    assert f"company {demo.number} run {run.run_number} of {run.year}" in text and run.run_id in text
    assert f"larger than the {cap} bytes allowed" in text
    (document_path,) = [path for path in transport.pulled if path.startswith("/api/documents/")]
    assert cap < transport.pulled[document_path] <= cap + 2 * chunk  # read up to the cap, and refused there
    served = world.document_chunks_served * chunk
    assert served < len(huge) / 2, f"the emulator sent {served} of {len(huge)} bytes: the reader did not stop"


def test_a_document_at_the_cap_is_read_whole_and_one_byte_more_is_refused(server, auth, world) -> None:
    world.document_polls = 0
    world.document_chunk = 1000  # streamed in many chunks
    demo = demo_company(1001)
    with make_client(server, auth) as client:
        run = march_run(client, demo.number)
        document = client.journal_xml(run)  # the seeded journal, as it is
    world.documents[demo.number] = document
    with make_client(server, auth, max_document_bytes=len(document)) as client:
        assert client.journal_xml(run) == document
    with (
        make_client(server, auth, max_document_bytes=len(document) - 1) as client,
        pytest.raises(ResponseError, match="document_too_large"),
    ):
        client.journal_xml(run)


def test_the_default_cap_is_the_journal_files_cap() -> None:
    import inspect

    from nmbrs_visma.journal_file import MAX_FILE_BYTES

    default = inspect.signature(NmbrsClient).parameters["max_document_bytes"].default
    assert default == MAX_FILE_BYTES == 200 * 1024 * 1024
