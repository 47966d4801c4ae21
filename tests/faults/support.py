"""Helpers of the fault tests: what the ledger must hold, what it holds, hooks into the emulators, a flow run in
a child process (to kill it, or to race it), and a memory watch.

The expected ledger is computed from the Nmbrs emulator's own generator (`NmbrsWorld.expected_lines`) and
the posting-key rules, never from what the pipeline reported, so a wrong pipeline cannot agree with itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmbrs_visma.journals.keys import administration_id, posting_key, read_marker
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.demo_data import DEMO_PERIOD, DEMO_YEAR, TENANTS
from nmbrs_visma.sandbox.serve import Sandboxes
from nmbrs_visma.sandbox.visma_net.world import Received, VismaWorld
from tests.support import PERIOD
from tests.support import demo_company as company
from tests.support import post as post  # the fault tests take it from here

LEDGER_ID = "L"

LineKey = tuple[str, str, str, str]  # (account, department, project, side)


def journal_kind(number: int) -> str:
    """The journal export the demo mapping asks for (dimensions on: the cost-center-and-unit journal)."""
    demo = company(number)
    return "journalscostcenterunit" if demo.cost_centers or demo.cost_units else "journals"


def by_company(rows: Iterable[StatusRow]) -> dict[int, list[StatusRow]]:
    grouped: dict[int, list[StatusRow]] = defaultdict(list)
    for row in rows:
        grouped[row.company].append(row)
    return dict(grouped)


def statuses(rows: Iterable[StatusRow], number: int) -> list[Status]:
    return sorted(row.status for row in rows if row.company == number)


# -- the ledger ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedTransaction:
    company: int
    tenant_id: str
    period_id: str
    cents: dict[LineKey, int]


def expected_ledger(sandboxes: Sandboxes, companies: Iterable[int]) -> dict[str, ExpectedTransaction]:
    """Posting key -> the transaction the demo month of `companies` must put in the ledger."""
    nmbrs = sandboxes.nmbrs_world
    expected: dict[str, ExpectedTransaction] = {}
    for number in companies:
        demo = company(number)
        run = nmbrs.run_for_period(number, DEMO_YEAR, DEMO_PERIOD)
        administration = administration_id(demo.tenant_id, demo.branch, LEDGER_ID)
        per_period: dict[str, dict[LineKey, int]] = defaultdict(lambda: defaultdict(int))
        lines = nmbrs.expected_lines(number, DEMO_YEAR, DEMO_PERIOD, journal_kind(number))  # type: ignore[arg-type]
        for (period_id, account, cost_center, cost_unit, side), cents in lines.items():
            department = cost_center.zfill(4) if cost_center else ""
            project = cost_unit.zfill(3) if cost_unit else ""
            per_period[period_id][(account, department, project, side)] += cents
        for period_id, cents in per_period.items():
            key = posting_key(number, run.year, run.period_end, 1, period_id, administration)  # the period's first run
            nonzero = {line: value for line, value in cents.items() if value}
            expected[key] = ExpectedTransaction(number, demo.tenant_id, period_id, nonzero)
    return expected


def _segment(value: str) -> str:
    return value if value.strip("0") else ""


def booked_ledger(world: VismaWorld) -> dict[str | None, list[tuple[str, Any]]]:
    """Posting key (None when a description carries no marker) -> every (tenant, transaction) booked with it."""
    booked: dict[str | None, list[tuple[str, Any]]] = defaultdict(list)
    for tenant in TENANTS:
        for transaction in world.transactions(tenant.tenant_id):
            marker = read_marker(transaction.description)
            booked[marker.key if marker else None].append((tenant.tenant_id, transaction))
    return dict(booked)


def transaction_cents(transaction: Any) -> dict[LineKey, int]:
    cents: dict[LineKey, int] = defaultdict(int)
    for line in transaction.lines:
        department, project = _segment(line.subaccount.get(1, "")), _segment(line.subaccount.get(2, ""))
        for side, amount in (("debit", line.debit), ("credit", line.credit)):
            if amount:
                cents[(line.account, department, project, side)] += int(amount * 100)
    return {key: value for key, value in cents.items() if value}


def assert_ledger(sandboxes: Sandboxes, companies: Iterable[int], *, complete: bool = True) -> dict[str, Any]:
    """The ledger holds every expected transaction of `companies` exactly once, in its tenant and period, to
    the cent per account, department, project and side; and nothing else. Returns key -> (tenant, transaction).
    With `complete=False` some may still be missing (a run that stopped half-way), but nothing else is there."""
    return assert_ledger_holds(sandboxes.visma_world, expected_ledger(sandboxes, companies), complete=complete)


def assert_rows_match_ledger(rows: Iterable[StatusRow], ledger: dict[str, Any]) -> None:
    """Every row reported sent or already sent names a batch the ledger holds, with the row's totals."""
    by_batch = {(tenant_id, transaction.batch_number): transaction for tenant_id, transaction in ledger.values()}
    for row in rows:
        if row.status in (Status.SENT, Status.ALREADY_SENT):
            transaction = by_batch.get((row.administration.split("/")[0], row.batch_number or ""))
            assert transaction is not None, f"row names batch {row.batch_number} the ledger does not hold: {row}"
            assert (transaction.period_id, transaction.debit_total, transaction.credit_total) == (
                row.period,
                row.debit,
                row.credit,
            ), row


def ledger_size(world: VismaWorld) -> int:
    return sum(len(world.transactions(tenant.tenant_id)) for tenant in TENANTS)


def api_calls(world: VismaWorld, method: str | None = None, path: str = "") -> list[Received]:
    with world.lock:
        return [r for r in world.received if (method is None or r.method == method) and r.path.startswith(path)]


# -- hooks --------------------------------------------------------------------------------------------------


class _HookedLog(list):  # type: ignore[type-arg]
    """The emulator's request log, calling `hook` with each request as it arrives (under the world's lock,
    before the request is handled): a test changes the world between one request and the next, exactly."""

    def __init__(self, items: Iterable[Received], hook: Callable[[Received], None]) -> None:
        super().__init__(items)
        self.hook = hook

    def append(self, item: Received) -> None:
        super().append(item)
        self.hook(item)


def on_request(world: VismaWorld, hook: Callable[[Received], None]) -> None:
    with world.lock:
        world.received = _HookedLog(world.received, hook)


@dataclass
class Countdown:
    """Calls `action` once, when the `count`-th request matching `match` arrives."""

    match: Callable[[Received], bool]
    count: int
    action: Callable[[], None]
    seen: int = 0
    fired: bool = False

    def __call__(self, request: Received) -> None:
        if self.fired or not self.match(request):
            return
        self.seen += 1
        if self.seen >= self.count:
            self.fired = True
            self.action()


def is_create(request: Received) -> bool:
    return request.method == "POST" and request.path == "/v2/journaltransaction"


def is_lookup(request: Received) -> bool:
    return request.method == "GET" and request.path == "/v2/journaltransaction"


# -- a flow run in a child process ---------------------------------------------------------------------------

_CHILD = """
import json, sys
from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals
rows = pass_rows(post_payroll_journals(period=sys.argv[1], companies=json.loads(sys.argv[2]), return_state=True))
print("ROWS:" + json.dumps([row.model_dump(mode="json") for row in rows]), flush=True)
"""


@dataclass
class FlowProcess:
    """`post-payroll-journals` in a child process (another worker), on this test's Prefect API and record."""

    companies: list[int]
    period: str = PERIOD
    process: subprocess.Popen[str] | None = None
    output: str = ""
    errors: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> FlowProcess:
        from prefect.settings import PREFECT_API_URL

        env = {**os.environ, **self.env, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, self.period, json.dumps(self.companies)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        return self

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def rows(self, timeout: float = 120.0) -> list[StatusRow]:
        assert self.process is not None
        self.output, self.errors = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, f"flow process failed ({self.process.returncode}):\n{self.errors[-4000:]}"
        line = next(text for text in reversed(self.output.splitlines()) if text.startswith("ROWS:"))
        return [StatusRow.model_validate(item) for item in json.loads(line.removeprefix("ROWS:"))]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def release_administration_locks() -> None:
    """Delete the Prefect server's per-administration posting locks (created again on demand), as an operator
    resets a dead worker's lock instead of waiting for its lease to lapse: tests start from free locks."""
    from prefect.client.orchestration import get_client

    from nmbrs_visma.tasks.posting import administration_lock_name

    prefix = administration_lock_name("")
    with get_client(sync_client=True) as client:
        for limit in client.read_global_concurrency_limits(limit=200):
            if limit.name.startswith(prefix):
                client.delete_global_concurrency_limit_by_name(limit.name)


# -- memory --------------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@contextmanager
def peak_rss(interval: float = 0.02) -> Iterator[Callable[[], int]]:
    """Sample RSS in a thread while the block runs; yields a callable giving the peak growth in bytes."""
    baseline = rss_bytes()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak[0] - baseline
    finally:
        stop.set()
        sampler.join()


def counts(items: Iterable[Any]) -> Counter[Any]:
    return Counter(items)


# -- any run's expected ledger (identity tests) --------------------------------------------------------------

LineCents = dict[tuple[str, str, str, str, str], int]  # (period_id, account, cost_center, cost_unit, side) -> cents


def run_lines(sandboxes: Sandboxes, number: int, period: int, year: int = DEMO_YEAR) -> LineCents:
    """The cents of the journal of company `number`'s Nmbrs run of `period` (the kind its mapping asks for)."""
    return dict(sandboxes.nmbrs_world.expected_lines(number, year, period, journal_kind(number)))  # type: ignore[arg-type]


def expected_run(
    sandboxes: Sandboxes,
    number: int,
    period: int,
    *,
    year: int = DEMO_YEAR,
    run_number: int | None = None,
    lines: LineCents | None = None,
    booked_in: dict[str, str] | None = None,
) -> dict[str, ExpectedTransaction]:
    """Posting key -> transaction of one run of company `number` whose last payroll period is `period`.

    `run_number`: the run's place in its period, in its key (default 1, the month's first run; a journal file's
    is the one it is posted with). `lines`: the journal's cents (default the generated journal; a test's edited export).
    `booked_in`: payroll period -> the financial period its transaction is booked in (a closed-period move)."""
    demo = company(number)
    if run_number is None:
        run_number = 1  # the run's place in its period: the first run of the month
    administration = administration_id(demo.tenant_id, demo.branch, LEDGER_ID)
    per_period: dict[str, dict[LineKey, int]] = defaultdict(lambda: defaultdict(int))
    journal = lines if lines is not None else run_lines(sandboxes, number, period, year)
    for (period_id, account, cost_center, cost_unit, side), cents in journal.items():
        department = cost_center.zfill(4) if cost_center else ""
        project = cost_unit.zfill(3) if cost_unit else ""
        per_period[period_id][(account, department, project, side)] += cents
    expected: dict[str, ExpectedTransaction] = {}
    for period_id, cents in per_period.items():
        key = posting_key(number, year, period, run_number, period_id, administration)
        nonzero = {line: value for line, value in cents.items() if value}
        booked = (booked_in or {}).get(period_id, period_id)
        expected[key] = ExpectedTransaction(number, demo.tenant_id, booked, nonzero)
    return expected


def assert_ledger_holds(
    world: VismaWorld, expected: dict[str, ExpectedTransaction], *, complete: bool = True
) -> dict[str, Any]:
    """Every expected transaction exactly once (with `complete=False`: at most once), in its tenant and period,
    to the cent per account, department, project and side; nothing else. Returns key -> (tenant, transaction)."""
    booked = booked_ledger(world)
    assert None not in booked, f"transactions without a posting key: {booked.get(None)}"
    twice = {key: len(found) for key, found in booked.items() if len(found) != 1}
    assert not twice, f"posted more than once: {twice}"
    unexpected = set(booked) - set(expected)
    assert not unexpected, f"transactions nobody should have posted: {sorted(unexpected)}"  # type: ignore[type-var]
    if complete:
        assert set(booked) == set(expected), f"missing: {sorted(set(expected) - set(booked))}"
    found: dict[str, Any] = {}
    for key, want in expected.items():
        if key not in booked:
            continue
        ((tenant_id, transaction),) = booked[key]
        assert (tenant_id, transaction.period_id) == (want.tenant_id, want.period_id), key
        assert transaction_cents(transaction) == want.cents, f"{key} (company {want.company} {want.period_id})"
        assert transaction.debit_total == transaction.credit_total
        found[key] = (tenant_id, transaction)
    return found


def net_cents(transactions: Iterable[Any]) -> dict[LineKey, int]:
    """What transactions book together, netted per account, department and project (debit minus credit),
    shown on the side that remains: original + reversal + replacement nets to the replacement."""
    signed: dict[tuple[str, str, str], int] = defaultdict(int)
    for transaction in transactions:
        for (account, department, project, side), cents in transaction_cents(transaction).items():
            signed[(account, department, project)] += cents if side == "debit" else -cents
    return {
        (*line, "debit" if value > 0 else "credit"): abs(value)  # type: ignore[misc]
        for line, value in signed.items()
        if value
    }


def write_journal(
    sandboxes: Sandboxes, path: Path, number: int, period: int = DEMO_PERIOD, year: int = DEMO_YEAR
) -> Path:
    """Company `number`'s Nmbrs run of `period` exported to `path` as the journal kind its mapping asks for."""
    nmbrs = sandboxes.nmbrs_world
    path.write_bytes(nmbrs.journal_document(nmbrs.run_for_period(number, year, period), journal_kind(number)))  # type: ignore[arg-type]
    return path


def is_release(request: Received) -> bool:
    return request.method == "POST" and request.path.endswith("/action/release")


# -- workers on machines of their own ------------------------------------------------------------------------

_WORKER_CHILD = """
import json, sys
from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals
from nmbrs_visma.posting_ledger import holder_name
print("HOLDER:" + holder_name(), flush=True)
state = post_payroll_journals(period=sys.argv[1], companies=json.loads(sys.argv[2]), return_state=True)
print("FLOW_RUN:" + str(state.state_details.flow_run_id), flush=True)
rows = pass_rows(state)
print("ROWS:" + json.dumps([row.model_dump(mode="json") for row in rows]), flush=True)
"""


@dataclass
class WorkerProcess(FlowProcess):
    """A `FlowProcess` as a worker on a machine of its own: its own Prefect home `home` (a folder no other
    process uses; with this test it shares only the Prefect API URL, and what `env` points at), the inherited
    environment without the names in `unset` nor any value inside this process's own Prefect home, then `env`
    on top (a PREFECT_HOME in `env` wins over `home` and over the parent's). Its output goes to files in `home`
    (no pipe to fill while a test waits). After `rows()`: `holder` (the `host:pid` it writes into ledger rows)
    and `flow_run_id`."""

    home: Path | None = None
    unset: tuple[str, ...] = ()
    holder: str = ""
    flow_run_id: str | None = None

    def environment(self) -> dict[str, str]:
        from prefect.settings import PREFECT_API_URL

        env = dict(os.environ)
        if self.home is not None:
            parent_home = os.environ.get("PREFECT_HOME")
            if parent_home:
                env = {name: value for name, value in env.items() if parent_home not in value}
            env["PREFECT_HOME"] = str(self.home)
        for name in self.unset:
            env.pop(name, None)
        env.update(self.env)
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        return env

    def _folder(self) -> Path:
        if self.home is None:
            import tempfile

            self.home = Path(tempfile.mkdtemp(prefix="nmbrs-visma-worker-"))
        return self.home

    def start(self) -> WorkerProcess:
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        with (folder / "stdout.txt").open("w") as out, (folder / "stderr.txt").open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CHILD, self.period, json.dumps(self.companies)],
                env=env,
                stdout=out,
                stderr=err,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
            )
        return self

    def rows(self, timeout: float = 120.0) -> list[StatusRow]:
        assert self.process is not None and self.home is not None
        self.process.wait(timeout)
        self.output = (self.home / "stdout.txt").read_text()
        self.errors = (self.home / "stderr.txt").read_text()
        assert self.process.returncode == 0, f"worker failed ({self.process.returncode}):\n{self.errors[-4000:]}"
        for text in self.output.splitlines():
            if text.startswith("HOLDER:"):
                self.holder = text.removeprefix("HOLDER:")
            elif text.startswith("FLOW_RUN:"):
                self.flow_run_id = text.removeprefix("FLOW_RUN:")
        line = next(text for text in reversed(self.output.splitlines()) if text.startswith("ROWS:"))
        return [StatusRow.model_validate(item) for item in json.loads(line.removeprefix("ROWS:"))]

    def stop(self) -> None:
        """Kill it if it still runs (test clean-up)."""
        if self.process is not None and self.process.poll() is None:
            self.kill()


def task_run_times(flow_run_id: str, prefix: str, timeout: float = 30.0) -> dict[str, tuple[Any, Any]]:
    """Task run name -> (start, end) of the finished task runs of a flow run whose names start with `prefix`,
    as the Prefect server recorded them (waits up to `timeout` for the server's recorder to catch up)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
        mine = [run for run in runs if run.name.startswith(prefix)]
        if mine and all(run.start_time and run.end_time for run in mine):
            return {run.name: (run.start_time, run.end_time) for run in mine}
        if time.monotonic() > deadline:
            raise AssertionError(f"task runs {prefix}* of flow run {flow_run_id} not finished on the server: {mine}")
        time.sleep(0.2)
