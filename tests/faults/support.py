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

from nmbrs_visma.journals.keys import administration_id, extract_key, posting_key
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.demo_data import COMPANIES, DEMO_PERIOD, DEMO_YEAR, TENANTS, DemoCompany
from nmbrs_visma.sandbox.serve import Sandboxes
from nmbrs_visma.sandbox.visma_net.world import Received, VismaWorld

PERIOD = f"{DEMO_YEAR}-{DEMO_PERIOD:02d}"
LEDGER_ID = "L"

LineKey = tuple[str, str, str, str]  # (account, department, project, side)


def company(number: int) -> DemoCompany:
    return next(c for c in COMPANIES if c.number == number)


def journal_kind(number: int) -> str:
    """The journal export the demo mapping asks for (dimensions on: the cost-center-and-unit journal)."""
    demo = company(number)
    return "journalscostcenterunit" if demo.cost_centers or demo.cost_units else "journals"


def post(**kwargs: Any) -> list[StatusRow]:
    """Run `post-payroll-journals` for the demo month, in this process."""
    from nmbrs_visma.flows.post_payroll_journals import post_payroll_journals

    kwargs.setdefault("period", PERIOD)
    return post_payroll_journals(**kwargs)


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
            key = posting_key(number, run.run_id, period_id, administration)
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
            booked[extract_key(transaction.description)].append((tenant.tenant_id, transaction))
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
    expected = expected_ledger(sandboxes, companies)
    booked = booked_ledger(sandboxes.visma_world)
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
from nmbrs_visma.flows.post_payroll_journals import post_payroll_journals
rows = post_payroll_journals(period=sys.argv[1], companies=json.loads(sys.argv[2]))
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
