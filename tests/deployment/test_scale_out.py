"""The production scale-out, as the README describes it: one Prefect server on PostgreSQL, the posting ledger in
a second PostgreSQL database, and two process workers on one work pool, each with its own Prefect home and
working folder (two machines). Two manual runs and one backfill run of the same month and companies are
created at once (the backfill is another deployment, so it overlaps a manual run on the other worker), with
slow creates so the runs race. Every journal lands in the Visma.net emulator exactly once, each transaction
is reported `sent` by exactly one run and `already sent` by the others, and every run's table artifact is
readable through the API."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import pytest

from nmbrs_visma.sandbox.server import free_port
from tests.deployment.harness import background, configure_demo_in_child, prefect_env, run_prefect, stop, wait_healthy
from tests.faults.support import PERIOD, assert_ledger, booked_ledger, expected_ledger

if TYPE_CHECKING:
    from postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
POOL = "nmbrs-visma"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
COMPANIES = [1001, 1002, 1003]
# 1001 March; 1002 March; 1003's March run corrects January and February: one transaction per period
TRANSACTIONS = [(1001, "202603"), (1002, "202603"), (1003, "202601"), (1003, "202602"), (1003, "202603")]
WORKERS = ("worker-a", "worker-b")


@pytest.fixture
def prefect_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for the Prefect server's own tables; yields its asyncpg URL, dropped afterwards."""
    name = f"prefect_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    yield f"postgresql+asyncpg://postgres@{postgres_server.host}:{postgres_server.port}/{name}"
    if postgres_server.running:
        postgres_server.drop_database(name)


def _wait_ready(api_url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    """`/api/ready`: the server's database is reachable and migrated, not just the web process up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prefect server exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        try:
            if httpx2.get(f"{api_url}/ready", timeout=5).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"prefect server not ready after {timeout:.0f}s:\n{log.read_text(errors='replace')}")


def _wait_for_workers(client: Any, names: tuple[str, ...], workers: dict[str, Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, (process, log) in workers.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited ({process.returncode}):\n{log.read_text(errors='replace')}")
        online = {worker.name for worker in client.read_workers_for_work_pool(POOL)}
        if set(names) <= online:
            return
        time.sleep(0.5)
    raise AssertionError(f"workers {names} did not come online in {timeout:.0f}s")


def _wait_for_runs(client: Any, run_ids: list[Any], timeout: float) -> dict[Any, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = {run_id: client.read_flow_run(run_id) for run_id in run_ids}
        if all(run.state is not None and run.state.type.value in TERMINAL for run in runs.values()):
            return runs
        time.sleep(0.5)
    states = {str(run_id): str(run.state.type.value if run.state else None) for run_id, run in runs.items()}
    raise AssertionError(f"flow runs did not finish in {timeout:.0f}s: {states}")


def _table_rows(client: Any, run_id: Any) -> tuple[list[Any], list[dict[str, str]]]:
    """The run's artifacts, and the rows of its table artifact(s), as read back through the API."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    rows: list[dict[str, str]] = []
    for artifact in artifacts:
        if artifact.type == "table":
            data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            rows.extend(data)
    return artifacts, rows


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_workers_on_postgres_post_every_journal_exactly_once(
    tmp_path: Path, prefect_database: str, postgres_url: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nmbrs_visma.sandbox.serve import running_sandboxes

    assert PERIOD == "2026-03"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_log = tmp_path / "server.log"
    client_env = prefect_env(tmp_path / "client-home", api_url)
    server_env = prefect_env(tmp_path / "server-home", None, {"PREFECT_API_DATABASE_CONNECTION_URL": prefect_database})
    worker_logs = {name: tmp_path / f"{name}.log" for name in WORKERS}
    server_args = ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    run_info: dict[str, Any] = {}
    try:
        with (
            background(server_args, server_env, REPO, server_log) as server,
            running_sandboxes() as sandboxes,
        ):
            wait_healthy(api_url, server, server_log)
            _wait_ready(api_url, server, server_log)
            run_prefect(["work-pool", "create", POOL, "--type", "process"], client_env, REPO)
            deployed = run_prefect(
                ["--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)], client_env, REPO
            )
            assert "post-payroll-journals/manual" in deployed
            assert "backfill-correction-periods/backfill" in deployed

            # in a process of its own, as in test_prefect_deployment.py (Prefect's in-process services)
            configure_demo_in_child(sandboxes.visma_url, sandboxes.nmbrs_url, client_env, REPO)
            sandboxes.visma_world.faults.create_latency = 1.0  # slow creates: the runs overlap

            with (
                temporary_settings(updates={PREFECT_API_URL: api_url}),
                get_client(sync_client=True) as client,
                ExitStack() as workers_running,
            ):
                deployments = {d.name: d for d in client.read_deployments()}
                assert {"manual", "backfill"} <= set(deployments)

                workers: dict[str, Any] = {}
                for name in WORKERS:  # two machines: own Prefect home, own folder, the one ledger
                    folder = tmp_path / name
                    folder.mkdir()
                    env = prefect_env(
                        tmp_path / f"{name}-home",
                        api_url,
                        {
                            "PREFECT_WORKER_QUERY_SECONDS": "1",
                            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                            "NMBRS_VISMA_LEDGER_URL": postgres_url,
                            "NMBRS_VISMA_OUTPUT_DIR": str(folder / "output"),
                        },
                    )
                    args = ["worker", "start", "--pool", POOL, "--type", "process", "--limit", "2", "--name", name]
                    process = workers_running.enter_context(background(args, env, folder, worker_logs[name]))
                    workers[name] = (process, worker_logs[name])
                _wait_for_workers(client, WORKERS, workers)

                manual = {"period": PERIOD, "companies": COMPANIES, "dry_run": False}
                backfill = {"start": PERIOD, "end": PERIOD, "companies": COMPANIES, "dry_run": False}
                created = [
                    ("manual-1", client.create_flow_run_from_deployment(deployments["manual"].id, parameters=manual)),
                    ("manual-2", client.create_flow_run_from_deployment(deployments["manual"].id, parameters=manual)),
                    (
                        "backfill",
                        client.create_flow_run_from_deployment(deployments["backfill"].id, parameters=backfill),
                    ),
                ]
                labels = {run.id: label for label, run in created}
                finished = _wait_for_runs(client, list(labels), timeout=300)
                for process, _ in workers.values():
                    stop(process)

                tables: dict[str, list[dict[str, str]]] = {}
                for run_id, run in finished.items():
                    label = labels[run_id]
                    artifacts, rows = _table_rows(client, run_id)
                    ran_on = [
                        name for name, log in worker_logs.items() if str(run_id) in log.read_text(errors="replace")
                    ]
                    run_info[label] = {
                        "state": run.state.type.value,
                        "start": run.start_time,
                        "end": run.end_time,
                        "in_logs_of": ran_on,
                        "artifacts": [(a.type, a.key, a.data) for a in artifacts],
                    }
                    tables[label] = rows
                print(
                    "runs:",
                    {label: {k: v for k, v in info.items() if k != "artifacts"} for label, info in run_info.items()},
                )
                failed = {label: info["state"] for label, info in run_info.items() if info["state"] != "COMPLETED"}
                assert not failed, f"runs not completed: {failed}; artifacts: {run_info}"
                # the backfill (another deployment) really ran alongside a manual run: a race, not a queue
                backfill_run = run_info["backfill"]
                assert any(
                    info["start"] < backfill_run["end"] and backfill_run["start"] < info["end"]
                    for label, info in run_info.items()
                    if label != "backfill"
                ), f"the backfill overlapped no manual run: {run_info}"

            # the Visma.net ledger: every journal of the companies exactly once, to the cent, nothing else
            ledger = assert_ledger(sandboxes, COMPANIES)
            expected = expected_ledger(sandboxes, COMPANIES)
            assert sorted((want.company, want.period_id) for want in expected.values()) == TRANSACTIONS
            booked = booked_ledger(sandboxes.visma_world)
            assert {key: len(found) for key, found in booked.items()} == dict.fromkeys(expected, 1)
            batch_of = {
                (expected[key].company, expected[key].period_id): transaction.batch_number
                for key, (_tenant, transaction) in ledger.items()
            }

            # each run's table names the companies; each transaction sent by exactly one run, already sent by the rest
            reported: dict[tuple[int, str], dict[str, tuple[str, str]]] = defaultdict(dict)
            for label, rows in tables.items():
                assert rows, f"{label} left no table artifact: {run_info[label]['artifacts']}"
                text = json.dumps(rows)
                for number in COMPANIES:
                    assert str(number) in text, f"{label}'s table does not name company {number}: {rows}"
                for row in rows:
                    transaction = (int(row["Company"].split()[0]), row["Period"])
                    assert transaction not in reported or label not in reported[transaction], (label, row)
                    reported[transaction][label] = (row["Status"], row["Batch"])
            print("reported:", dict(reported))
            assert sorted(reported) == TRANSACTIONS, dict(reported)
            for transaction, by_run in reported.items():
                assert set(by_run) == set(tables), f"{transaction} not reported by every run: {by_run}"
                statuses = sorted(status for status, _ in by_run.values())
                assert statuses == ["already sent", "already sent", "sent"], f"{transaction}: {by_run}"
                assert {batch for _, batch in by_run.values()} == {batch_of[transaction]}, f"{transaction}: {by_run}"
    except BaseException:
        for log in (server_log, *worker_logs.values()):
            if log.exists():
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-8000:]}")
        for label, info in run_info.items():
            print(f"--- {label} ({info['state']}) artifacts ---\n{info['artifacts']}")
        raise
