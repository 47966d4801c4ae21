"""Reconciliation against both emulators over real HTTP and a real Prefect API: post a month, then change the
ledger in Visma.net as people do (edit a batch through the API's PUT, delete one and reverse one in Visma.net's
own windows, the emulator's world controls), and reconcile names each, to the cent, and exits non-zero; what was
left alone agrees. Also: the emulator's PUT held to the published spec, and the client's read of the reversing
fields (MockTransport)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from nmbrs_visma.clients.errors import NotFound
from nmbrs_visma.clients.visma_connect import VismaConnectAuth
from nmbrs_visma.clients.visma_net import VismaNetClient
from nmbrs_visma.journals.reconcile import TransactionCheck, Verdict
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.demo_data import DEMO_PERIOD, DEMO_YEAR
from tests.support import Sandbox, dumps, service_auth

PERIOD = f"{DEMO_YEAR}-{DEMO_PERIOD:02d}"


def _edit(url: str, tenant: str, batch: str, change: Any) -> httpx2.Response:
    """`PUT /v2/journaltransaction/{batch}` as a person's tool does it: read the batch (and its ETag), change it,
    send it back with If-Match. `change(dto)` returns the JournalTransactionUpdateDto to send."""
    with httpx2.Client(base_url=url, auth=service_auth(url, tenant), timeout=10) as http:
        current = http.get(f"/v2/journaltransaction/{batch}")
        current.raise_for_status()
        dto = json.loads(current.content, parse_float=Decimal)
        headers = {"If-Match": current.headers["ETag"], "Content-Type": "application/json"}
        return http.put(f"/v2/journaltransaction/{batch}", content=dumps(change(dto)), headers=headers)


# -- the emulator's PUT and the client's read: fast, no Prefect -----------------------------------------------


def _balanced(url: str, tenant: str = "1000001") -> str:
    body = {
        "transactionDate": {"value": "2026-03-25T00:00:00"},
        "financialPeriod": {"value": "202603"},
        "description": {"value": "payroll"},
        "journalTransactionLines": [
            {"accountNumber": {"value": account}, "subaccount": [{"segmentId": 1, "segmentValue": "0000"},
             {"segmentId": 2, "segmentValue": "000"}], f"{side}AmountInCurrency": {"value": Decimal("100.00")}}
            for account, side in (("4000", "debit"), ("1700", "credit"))
        ],
    }  # fmt: skip
    with VismaNetClient(base_url=url, auth=service_auth(url, tenant)) as client:
        return client.create_journal_transaction(dumps(body))


def test_the_emulator_edits_a_batch_as_the_spec_puts_it(sandbox: Sandbox, reference_dir: Path) -> None:
    from tests.sandbox.visma_net.spec import Spec

    world, server = sandbox.world, sandbox.server
    spec = Spec(reference_dir)
    doc, put = spec.operation("PUT", "/v2/journaltransaction/1")
    request_schema = spec.validator(doc, put["requestBody"]["content"]["application/json"]["schema"])
    batch = _balanced(server.url)

    def one_cent_more(dto: dict[str, Any]) -> dict[str, Any]:
        line = dto["journalTransactionLines"][0]
        return {"journalTransactionLines": [{"operation": "Update", "lineNumber": {"value": line["lineNumber"]},
                "debitAmountInCurrency": {"value": line["debitAmount"] + Decimal("0.01")}}]}  # fmt: skip

    refused = _edit(server.url, "1000001", batch, one_cent_more)  # a balanced batch must stay balanced
    assert refused.status_code == 400 and refused.json()["ExceptionFaultCode"] == "BatchOutOfBalance"
    assert world.tenants["1000001"].batches[batch].lines[0].debit == Decimal("100.00")

    def held(dto: dict[str, Any]) -> dict[str, Any]:
        body = one_cent_more(dto) | {"hold": {"value": True}}
        assert not list(request_schema.iter_errors(json.loads(dumps(body))))
        return body

    answer = _edit(server.url, "1000001", batch, held)
    assert answer.status_code == 204 and answer.headers["ETag"] and not answer.content
    with VismaNetClient(base_url=server.url, auth=service_auth(server.url, "1000001")) as client:
        dto = client.journal_transaction(batch)
        assert dto["status"] == "Hold" and dto["journalTransactionLines"][0]["debitAmount"] == Decimal("100.01")
        assert dto["debitTotal"] == Decimal("100.01") and dto["creditTotal"] == Decimal("100.00")
        assert not list(spec.response_validator("GET", f"/v2/journaltransaction/{batch}").iter_errors(dto))

        with httpx2.Client(base_url=server.url, auth=service_auth(server.url, "1000001")) as http:
            stale = http.put(f"/v2/journaltransaction/{batch}", content=b"{}", headers={"If-Match": '"stale"'})
            assert stale.status_code == 412
            unknown = http.put(f"/v2/journaltransaction/{batch}", content=b'{"colour": {"value": "red"}}')
            assert unknown.status_code == 400 and "colour" in unknown.json()["ExceptionMessage"]
            missing = http.put("/v2/journaltransaction/999999", content=b"{}")
            assert missing.status_code == 404

        released = _balanced(server.url)
        client.release_journal_transaction(released)
        locked = _edit(server.url, "1000001", released, lambda dto: {"description": {"value": "edited"}})
        assert locked.status_code == 400 and "cannot be edited" in locked.json()["ExceptionMessage"]
        with pytest.raises(ValueError, match="released"):
            world.delete_batch("1000001", released)

        reversing = world.reverse_batch("1000001", released)
        listed = {s.batch_number: s for s in client.list_journal_transactions("202603")}
        assert listed[reversing.batch_number].reversing_entry
        assert listed[reversing.batch_number].original_batch_number == released
        assert not listed[released].reversing_entry and listed[released].original_batch_number == ""
        dto = client.journal_transaction(reversing.batch_number)
        assert not list(spec.response_validator("GET", "/v2/journaltransaction/1").iter_errors(dto))
        assert [line["creditAmount"] for line in dto["journalTransactionLines"]] == [Decimal("100.00"), 0]

        world.delete_batch("1000001", batch)
        with pytest.raises(NotFound, match=batch):
            client.journal_transaction(batch)


def test_the_client_reads_a_batch_and_the_reversing_fields_of_the_listing() -> None:
    """MockTransport: one client, the wire as the spec writes it (the reversing batch of 000007 is 000009)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/connect/token":
            return httpx2.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600})
        if request.url.path == "/v2/journaltransaction/000404":
            return httpx2.Response(404, json={"Message": "Journal transaction 000404 not found"})
        if request.url.path == "/v2/journaltransaction/000007":
            body = b'{"batchNumber":"000007","status":"Balanced","journalTransactionLines":[{"debitAmount":1234.57}]}'
            return httpx2.Response(200, content=body, headers={"Content-Type": "application/json"})
        assert request.url.path == "/v2/journaltransaction" and request.url.params["periodId"] == "202603"
        page = [
            {"batchNumber": "000007", "financialPeriod": "202603", "status": "Balanced", "reversingEntry": False},
            {"batchNumber": "000009", "financialPeriod": "202603", "status": "Balanced", "reversingEntry": True,
             "originalBatchNumber": "000007"},
        ]  # fmt: skip
        return httpx2.Response(200, json=page if request.url.params["pageNumber"] == "1" else [])

    transport = httpx2.MockTransport(handler)
    auth = VismaConnectAuth.service(
        client_id="c",
        client_secret=SecretStr("s"),
        tenant_id="1",
        token_url="https://connect.example/connect/token",
        transport=transport,
    )
    with VismaNetClient(base_url="https://api.example", auth=auth, transport=transport) as client:
        batch = client.journal_transaction("000007")
        assert batch["journalTransactionLines"][0]["debitAmount"] == Decimal("1234.57")  # exact, not a float
        with pytest.raises(NotFound, match="000404"):
            client.journal_transaction("000404")
        listed = {s.batch_number: s for s in client.list_journal_transactions("202603")}
    assert (listed["000009"].reversing_entry, listed["000009"].original_batch_number) == (True, "000007")
    assert (listed["000007"].reversing_entry, listed["000007"].original_batch_number) == (False, "")


def test_the_reconcile_deployment_has_no_schedule_and_a_form_of_period_run_and_companies() -> None:
    import yaml
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    repo = Path(__file__).resolve().parents[2]
    deployments = yaml.safe_load((repo / "deployments" / "prefect.yaml").read_text())["deployments"]
    (deployment,) = [d for d in deployments if d["name"] == "reconcile"]
    assert deployment["schedules"] == [] and deployment["parameters"] == {}
    assert "nmbrs-visma" in deployment["tags"]
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert flow.name == "reconcile-payroll-journals"
    form = parameter_schema(flow.fn).model_dump_for_openapi()["properties"]
    assert list(form) == ["period", "run", "companies"]
    assert form["period"]["title"] == "Period" and "previous-month" in form["period"]["description"]
    assert "pattern" in form["period"]["anyOf"][0] and form["run"]["title"] == "Payroll run"


# -- the flow and the command, against both emulators ---------------------------------------------------------


def _post() -> list[StatusRow]:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    rows = pass_rows(post_payroll_journals(period=PERIOD, return_state=True))
    assert {row.company for row in rows if row.status is Status.SENT} == {1001, 1002, 1003, 1006}
    return rows


def _reconcile(**kwargs: Any) -> tuple[Any, list[TransactionCheck]]:
    from nmbrs_visma.flows.reconcile import checks_of, reconcile_payroll_journals

    state = reconcile_payroll_journals(period=PERIOD, return_state=True, **kwargs)
    return state, checks_of(state)


def _batches(rows: list[StatusRow]) -> dict[tuple[int, str], tuple[str, str]]:
    """(company, period) -> (tenant, batch) of every batch sent."""
    return {
        (row.company, row.period): (row.administration.split("/")[0], row.batch_number or "")
        for row in rows
        if row.status is Status.SENT
    }


def _by_batch(checks: list[TransactionCheck]) -> dict[tuple[str, str], TransactionCheck]:
    """(tenant, batch) -> its check (batch numbers are per Visma.net company)."""
    return {(check.administration.split("/")[0], check.batch_number): check for check in checks if check.batch_number}


def _run_cli(capsys: pytest.CaptureFixture[str], **kwargs: Any) -> tuple[int, str, str]:
    from nmbrs_visma.reconcile_command import run_reconcile

    capsys.readouterr()
    code = run_reconcile(period=PERIOD, companies=None, payroll_run=None, **kwargs)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_untouched_batches_agree_and_the_command_exits_0(sandboxes: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _post()
    sent = _batches(rows)
    state, checks = _reconcile()
    assert state.is_completed(), state.message
    assert set(_by_batch([c for c in checks if c.verdict is Verdict.AGREES])) == set(sent.values())
    skipped = {check.company: check for check in checks if check.verdict is Verdict.SKIPPED}
    assert set(skipped) == {1004, 1005, 2001}  # a test company, a run not locked, a blocked debtor: no alarm
    assert "test company" in skipped[1004].reason and "not locked" in skipped[1005].reason
    assert all(check.verdict in {Verdict.AGREES, Verdict.SKIPPED} for check in checks), checks

    code, out, err = _run_cli(capsys, output="json")
    assert code == 0, err
    records = json.loads(out)  # nothing else on stdout
    agreed = [record for record in records if record["verdict"] == "agrees"]
    assert {(record["administration"].split("/")[0], record["batch"]) for record in agreed} == set(sent.values())
    assert all(record["expected"] == record["found"] and record["difference"] == "0.00" for record in agreed)
    assert set(records[0]) >= {"company", "run", "period", "batch", "account", "subaccount", "expected", "found"}


@pytest.mark.slow
def test_an_edited_a_deleted_and_a_reversed_batch_are_named_to_the_cent(
    sandboxes: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    rows = _post()
    sent = _batches(rows)
    url, world = sandboxes.visma_url, sandboxes.visma_world
    noord = sent[(1001, "202603")]  # one line's amount: one cent more, the batch put on hold
    oost_january = sent[(1003, "202601")]  # one line's account changed
    oost_february = sent[(1003, "202602")]  # deleted in Visma.net's window
    zuid = sent[(1002, "202603")]  # reversed with Visma.net's Reverse action
    edited_line: dict[str, Any] = {}

    def one_cent_more(dto: dict[str, Any]) -> dict[str, Any]:
        line = next(line for line in dto["journalTransactionLines"] if line["debitAmount"])
        edited_line.update(line)
        change = {"operation": "Update", "lineNumber": {"value": line["lineNumber"]},
                  "debitAmountInCurrency": {"value": line["debitAmount"] + Decimal("0.01")}}  # fmt: skip
        return {"hold": {"value": True}, "journalTransactionLines": [change]}

    def other_account(dto: dict[str, Any]) -> dict[str, Any]:
        line = next(line for line in dto["journalTransactionLines"] if line["accountNumber"] == "4000")
        edited_line["january"] = line
        change = {
            "operation": "Update",
            "lineNumber": {"value": line["lineNumber"]},
            "accountNumber": {"value": "4300"},
        }
        return {"journalTransactionLines": [change]}

    assert _edit(url, *noord, one_cent_more).status_code == 204
    assert _edit(url, *oost_january, other_account).status_code == 204
    world.delete_batch(*oost_february)
    reversing = world.reverse_batch(*zuid)

    state, checks = _reconcile()
    assert state.is_failed()
    by_batch = _by_batch(checks)

    noord_check = by_batch[noord]
    assert (noord_check.verdict, noord_check.company, noord_check.reference, noord_check.period) == (
        Verdict.EDITED, 1001, "NM2603R1", "202603"
    )  # fmt: skip
    (line,) = [line for line in noord_check.lines if line.difference_cents]
    assert line.account == edited_line["accountNumber"] and line.side == "debit" and line.difference_cents == 1
    assert line.found_cents == int(edited_line["debitAmount"] * 100) + 1

    january = by_batch[oost_january]
    moved = {(line.account, line.difference_cents) for line in january.lines if line.difference_cents}
    cents = int(edited_line["january"]["debitAmount"] * 100)
    assert january.verdict is Verdict.EDITED and moved == {("4000", -cents), ("4300", cents)}

    february = by_batch[oost_february]
    assert february.verdict is Verdict.DELETED and february.period == "202602" and "deleted" in february.reason
    assert february.lines and all(line.found_cents == 0 for line in february.lines)

    zuid_check = by_batch[zuid]
    assert zuid_check.verdict is Verdict.REVERSED and f"by batch {reversing.batch_number}" in zuid_check.reason
    assert all(line.found_cents == 0 for line in zuid_check.lines)

    untouched = set(sent.values()) - {noord, oost_january, oost_february, zuid}
    assert untouched and all(by_batch[batch].verdict is Verdict.AGREES for batch in untouched)
    assert f"company 1001 run NM2603R1 period 202603 batch {noord[1]}: edited" in (state.message or "")
    assert "4 difference(s)" in (state.message or "")

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["reconciliation-2026-03"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
        )
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    one_cent = [row for row in table if row["Batch"] == noord[1]]
    assert [(row["Account"], row["Difference"], row["Verdict"]) for row in one_cent] == [
        (edited_line["accountNumber"], "0.01", "edited")
    ]

    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = _run_cli(capsys)
    assert code == 1, err
    lines = out.splitlines()
    assert all(len(text) <= 100 for text in lines), max(lines, key=len)
    row_line = next(text for text in lines if noord[1] in text and " 0.01" in text)
    expected = f"{edited_line['debitAmount']:.2f}"
    found = f"{edited_line['debitAmount'] + Decimal('0.01'):.2f}"
    assert expected in row_line and found in row_line and "NM2603R1" in row_line and "202603" in row_line
    assert f"batch {oost_february[1]}: deleted" in out and f"by batch {reversing.batch_number}" in out

    code, out, err = _run_cli(capsys, output="json")
    assert code == 1
    records = json.loads(out)
    differing = {(r["company"], r["run"], r["period"], r["batch"], r["account"], r["difference"], r["verdict"])
                 for r in records if r["verdict"] not in {"agrees", "skipped"}}  # fmt: skip
    assert (1001, "NM2603R1", "202603", noord[1], edited_line["accountNumber"], "0.01", "edited") in differing
    assert (1003, "NM2603R1", "202601", oost_january[1], "4300", f"{cents / 100:.2f}", "edited") in differing
    assert {r[6] for r in differing} == {"edited", "deleted", "reversed"}


def test_a_malformed_period_is_refused_before_any_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_cli_period(capsys, "2026-3")
    assert code == 2 and out == "" and "2026-3" in err and "error" in err


def _run_cli_period(capsys: pytest.CaptureFixture[str], period: str) -> tuple[int, str, str]:
    from nmbrs_visma.reconcile_command import run_reconcile

    code = run_reconcile(period=period, companies=None, payroll_run=None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
