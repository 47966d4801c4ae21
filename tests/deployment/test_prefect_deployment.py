"""The deployments as a bureau runs them: a real `prefect server`, the project's prefect.yaml deployed, a
process worker started outside the repository, and the manual deployment run through the API with
parameters (as the Prefect UI does) against the emulators. The run completes, the journals land in the
Visma.net emulator, and the run's artifacts are readable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nmbrs_visma.sandbox.server import free_port
from tests.deployment.harness import background, configure_demo_in_child, prefect_env, run_prefect, stop, wait_healthy
from tests.deployment.harness import worker_env as worker_env_of

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
POOL = "nmbrs-visma"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _wait_for_run(client, run_id, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.type.value in TERMINAL:
            return run
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout:.0f}s")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_manual_deployment_runs_on_a_worker_and_shows_its_artifacts(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from nmbrs_visma.sandbox.serve import running_sandboxes

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "prefect-home"
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    worker_dir = tmp_path / "worker"  # not the repository: the worker must not need the deploying folder
    worker_dir.mkdir()
    client_env = prefect_env(home, api_url)
    worker_env = worker_env_of(home, api_url, tmp_path)
    server_args = ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    try:
        with (
            background(server_args, prefect_env(home, None), REPO, server_log) as server,
            running_sandboxes() as sandboxes,
        ):
            wait_healthy(api_url, server, server_log)
            run_prefect(["work-pool", "create", POOL, "--type", "process"], client_env, REPO)
            deployed = run_prefect(
                ["--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)], client_env, REPO
            )
            assert "post-payroll-journals/manual" in deployed

            # config apply + Nmbrs connect, in a process of its own: Prefect's in-process services (the
            # concurrency-slot service behind the token lock) would otherwise stay bound to this server
            configure_demo_in_child(sandboxes.visma_url, sandboxes.nmbrs_url, client_env, REPO)
            with (
                temporary_settings(updates={PREFECT_API_URL: api_url}),
                get_client(sync_client=True) as client,
            ):
                deployments = {d.name: d for d in client.read_deployments()}
                assert set(deployments) == {"daily", "monthly", "manual", "backfill", "reconcile", "keep-alive"}
                monthly = deployments["monthly"]
                (schedule,) = monthly.schedules
                assert schedule.schedule.cron == "0 6 5 * *"
                assert schedule.schedule.timezone == "Europe/Amsterdam"
                assert monthly.parameters == {"period": "previous-month"}
                (daily,) = deployments["daily"].schedules
                assert (daily.schedule.cron, daily.schedule.timezone) == ("0 6 * * *", "Europe/Amsterdam")
                assert deployments["daily"].parameters == {}
                for deployment in deployments.values():
                    assert deployment.pull_steps == []
                    assert deployment.work_pool_name == POOL
                    assert deployment.global_concurrency_limit is not None
                    assert deployment.global_concurrency_limit.limit == 1
                    assert deployment.concurrency_options is not None
                    assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
                assert not deployments["manual"].schedules and not deployments["backfill"].schedules
                form = deployments["manual"].parameter_openapi_schema["properties"]
                assert {"period", "companies", "run", "journal_file", "dry_run"} <= set(form)
                assert deployments["manual"].parameters == {"dry_run": True}  # a Quick run sends nothing

                # as the UI's "Run" with custom parameters does
                run = client.create_flow_run_from_deployment(
                    deployments["manual"].id,
                    parameters={"period": "2026-03", "companies": [1001, 1004], "dry_run": False},
                )
                with background(
                    ["worker", "start", "--pool", POOL, "--type", "process", "--limit", "2"],
                    worker_env,
                    worker_dir,
                    worker_log,
                ) as worker:
                    finished = _wait_for_run(client, run.id, timeout=150)
                    stop(worker)
                assert finished.state.type.value == "COMPLETED", worker_log.read_text(errors="replace")
                assert finished.parameters["companies"] == [1001, 1004]

                artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                assert artifacts, "the run left no artifact"
                tables = [artifact for artifact in artifacts if artifact.type == "table"]
                assert tables, [artifact.type for artifact in artifacts]
                text = " ".join(str(artifact.data) for artifact in tables)
                assert "1001" in text and "1004" in text
                assert "sent" in text and "skipped" in text  # the test company: reported, no alarm
                assert finished.name == "2026-03 · companies 1001, 1004" and "payroll" in finished.tags

            posted = sandboxes.visma_world.transactions("1000001")
            assert len(posted) == 1  # company 1001's March journal; the test company 1004 sent nothing
    except BaseException:
        for log in (server_log, worker_log):
            if log.exists():
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-6000:]}")
        raise
