"""What a payroll admin (and an automation) reads of a flow run: its final state and message, its name and tags,
and artifact keys that keep dry runs apart from real posts. Against both emulators and the Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.states import State

from nmbrs_visma.results import Status
from nmbrs_visma.tasks.report import run_artifact_key, status_artifact_key

pytestmark = pytest.mark.slow


def _run(**parameters: object) -> State:
    from nmbrs_visma.flows.post_payroll_journals import post_payroll_journals

    return post_payroll_journals(**parameters, return_state=True)  # type: ignore[arg-type]


def _flow_run(state: State) -> object:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def test_a_refusal_fails_the_run_naming_the_company_and_a_test_company_alone_does_not(sandboxes: object) -> None:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows

    refused = _run(period="2026-03", companies=[1001, 2001])
    assert refused.is_failed()
    assert refused.message.startswith("1 problem(s) in 1 company(ies) (1 sent, 1 refused): company 2001 Slapende")
    assert "debtor is blocked" in refused.message
    assert {row.status for row in pass_rows(refused)} == {Status.SENT, Status.REFUSED}  # the rows are kept
    run = _flow_run(refused)
    assert run.state.is_failed() and run.state.message == refused.message  # the server's state, as alerts see it
    assert run.name == "2026-03 · companies 1001, 2001"
    assert {"nmbrs-visma", "payroll"} <= set(run.tags) and "dry-run" not in run.tags

    skipped = _run(period="2026-03", companies=[1001, 1004])  # 1001 already sent, 1004 a test company
    assert skipped.is_completed(), skipped.message
    assert skipped.message == "1 already sent, 1 skipped"


def test_a_dry_run_is_named_tagged_and_keyed_apart_and_its_payloads_are_readable(sandboxes: object) -> None:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows

    state = _run(period="2026-03", companies=[1002], dry_run=True)
    assert state.is_completed()
    run = _flow_run(state)
    assert run.name == "2026-03 · company 1002 · dry run" and "dry-run" in run.tags
    (row,) = pass_rows(state)
    assert row.status is Status.DRY_RUN and row.payload_file.endswith(".json")
    assert json.loads(Path(row.payload_file).read_text(encoding="utf-8"))["journalTransactionLines"]

    def latest_by(key: str) -> Artifact | None:  # the test server is shared: the key's latest, if this run's
        artifact = Artifact.get(key)
        return artifact if artifact is not None and artifact.flow_run_id == run.id else None

    assert latest_by(run_artifact_key("payroll-journals-2026-03", dry_run=True)) is not None
    assert latest_by(run_artifact_key("payroll-journals-2026-03", dry_run=False)) is None  # the real key untouched
    status = latest_by(status_artifact_key(row.administration, "2026-03", dry_run=True))
    assert status is not None and "dry run" in status.data
    assert latest_by(status_artifact_key(row.administration, "2026-03", dry_run=False)) is None
    payloads = latest_by("payroll-journals-2026-03-dry-run-payloads")
    assert payloads is not None
    assert '\n  "journalTransactionLines": [\n' in payloads.data  # pretty-printed, one section per posting
    assert payloads.data.count("\n## Company 1002") == 1

    real = _run(period="2026-03", companies=[1002])
    (sent,) = pass_rows(real)
    assert sent.status is Status.SENT
    assert _flow_run(real).name == "2026-03 · company 1002"
    shown = Artifact.get(status_artifact_key(sent.administration, "2026-03", dry_run=False))
    assert shown is not None and sent.batch_number in shown.data and "dry run" not in shown.data


def test_the_journal_document_wait_is_the_runs_setting(sandboxes, monkeypatch: pytest.MonkeyPatch) -> None:
    """`NMBRS_VISMA_DOCUMENT_WAIT`, read when the run starts, bounds the wait for a document Nmbrs never finishes:
    the run fails naming the wait, nothing is sent, and the next run (documents ready) posts it."""
    from nmbrs_visma.flows.post_payroll_journals import pass_rows

    monkeypatch.setenv("NMBRS_VISMA_DOCUMENT_WAIT", "0.5")
    sandboxes.nmbrs_world.never_finish = True
    try:
        waited = _run(period="2026-03", companies=[1002])
    finally:
        sandboxes.nmbrs_world.never_finish = False
    assert waited.is_failed()
    (row,) = pass_rows(waited)
    assert row.status is Status.FAILED and "still processing after 0.5s" in row.reason, row.reason
    assert ("POST", "/v2/journaltransaction") not in sandboxes.visma_calls
    assert _run(period="2026-03", companies=[1002]).is_completed()
