"""End-to-end benchmark: the real `post-payroll-journals` flow against a bare asyncio httpx2 poster.

N administrations (default 500), each a Visma.net tenant mapped to an Nmbrs company whose March run holds 400
journal lines over three periods (see `e2e_world.py`). The pipeline run is the flow itself, in this process,
on a Prefect test harness, against both emulators over real HTTP with realistic latency (150 ms per create,
60 ms per read) and a per-tenant rate budget. The emulators run in processes of their own (`e2e_emulators.py`),
as the real services are remote: their work is not charged to either contender. Beside the pipeline, on a
fresh Visma.net emulator each time, a bare asyncio httpx2 script posts the same prebuilt payloads (the core's
own parse and build) with the same concurrency: `--workers` administrations creating at once, each
administration's periods in order (the bench counts the creates in flight on both sides, and stops if the
pipeline's exceed `--workers`). The pipeline runs up to three times `--workers` administrations at once, each
its straight line (runs found, journals read and planned in its `prepare` task, then its `post` task): while
`--workers` of them create, the others read Nmbrs and look up their periods; the bare script has nothing to
read or record. Both are repeated at zero latency, where the difference is the pipeline's own cost.

    python bench/e2e.py [--admins N] [--workers N] [--create-latency S] [--read-latency S] [--budget N]
                        [--repeat K]

With `--repeat K`, the latency pair (pipeline, then bare, one after the other) runs K times and the median
pair's ratio counts (the lower middle for an even K): on a shared machine whose speed drifts between minutes,
one pair can land on a slow spell for one contender only.

Targets: ratio <= 1.3 at the default size; per administration and period at most one create, one look-up and
the amortised reads; memory flat in N; overhead under 100 ms per administration. The last line is
`ratio=<pipeline/bare> overhead_ms=<per administration>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _prepare_environment(workers: int) -> Path:
    """Prefect reads its settings at import: a throwaway home, the task-run recorder's and event persister's
    batch sizes the README recommends for a server of hundreds of companies, quiet console logging (the
    benchmark prints its own figures)."""
    home = Path(tempfile.mkdtemp(prefix="nmbrs-visma-bench-"))
    os.environ.update(
        {
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
            "NMBRS_VISMA_MAX_WORKERS": str(workers),
            "NMBRS_VISMA_OUTPUT_DIR": str(home / "output"),
        }
    )
    return home


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples RSS in a thread while a phase runs."""

    def __init__(self) -> None:
        self.start = rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class CpuClock:
    """CPU seconds spent by this process, the emulators' processes and the other children (the Prefect test
    server), read from /proc: they share the machine's cores, so this says who is busy."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, emulator_pids: set[int]) -> None:
        self.emulator_pids = emulator_pids

    @classmethod
    def _cpu(cls, pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / cls.TICKS  # utime, stime

    @staticmethod
    def _children(pid: int) -> list[int]:
        found: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
        return found

    def read(self) -> Counter[str]:
        me = os.getpid()
        seconds: Counter[str] = Counter({"pipeline process": self._cpu(me)})
        pending = self._children(me)
        while pending:
            pid = pending.pop()
            owner = "emulators" if pid in self.emulator_pids else "prefect server and others"
            seconds[owner] += self._cpu(pid)
            pending += self._children(pid)
        return seconds


class Sampler:
    """A poor man's sampling profiler for threaded code: every 10 ms, the innermost frame of this project (or
    else of Prefect / httpx2) in each thread; `top()` says where the wall time of the worker threads goes.
    Only with `--profile`: walking live frames of other threads is racy on CPython 3.11 (a sample can fail)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(0.01):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                try:
                    self.counts[self._where(frame)] += 1
                except AttributeError:  # the frame changed under us
                    self.counts["?"] += 1

    @staticmethod
    def _where(frame: Any) -> str:
        chain = []
        while frame is not None:
            chain.append(frame)
            frame = frame.f_back
        for marker in ("nmbrs_visma", "prefect", "httpx2"):
            for candidate in chain:
                if marker in candidate.f_code.co_filename:
                    name = candidate.f_code.co_filename.split(marker, 1)[1]
                    return f"{marker}{name}:{candidate.f_code.co_name}"
        return f"other:{chain[0].f_code.co_name}" if chain else "?"

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def top(self, count: int = 25) -> list[tuple[str, int]]:
        return self.counts.most_common(count)


class AtOnce:
    """Counts the most calls of a method in progress at once, while installed (the pipeline's creates)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name
        self.original = getattr(owner, name)
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> AtOnce:
        original = self.original

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.now -= 1

        setattr(self.owner, self.name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.name, self.original)


@dataclass
class Phase:
    name: str
    wall: float
    requests: Counter[str]
    tokens: int
    rss_start: float = 0.0
    rss_peak: float = 0.0
    cpu: Counter[str] = field(default_factory=Counter)
    creating: int = 0  # the most creates in flight at once


class Bench:
    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.emulators: Any = None
        self.prebuilt: dict[str, list[bytes]] = {}

    def ledger_url(self, label: str) -> str:
        """A fresh, empty posting ledger for one pipeline run: a SQLite file, or a new database on --ledger."""
        if not self.args.ledger:
            return f"sqlite:///{self.home / f'ledger-{label}.db'}"
        import sqlalchemy as sa

        server = sa.make_url(self.args.ledger).set(drivername="postgresql+psycopg")
        name = f"nv_bench_{label.replace('-', '_')}_{os.getpid()}"
        engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return server.set(database=name).render_as_string(hide_password=False)

    def fresh_visma(self, create_latency: float, read_latency: float) -> str:
        """A new Visma.net world on the emulators' port (the blocks keep pointing at it)."""
        return str(
            self.emulators.fresh_visma(
                self.args.admins,
                create_latency=create_latency,
                read_latency=read_latency,
                budget=self.args.budget,
                window=self.args.window,
            )
        )

    def setup(self) -> None:
        import e2e_world
        from e2e_emulators import Emulators

        from nmbrs_visma.config import apply_config
        from nmbrs_visma.demo import connect_demo_nmbrs

        admins = self.args.admins
        self.emulators = Emulators()
        visma_url = self.fresh_visma(0.0, 0.0)
        nmbrs_url = self.emulators.start_nmbrs(admins)
        started = time.perf_counter()
        apply_config(*e2e_world.config(admins, visma_url, nmbrs_url))
        connect_demo_nmbrs()
        print(f"setup: {admins} administrations configured in {time.perf_counter() - started:.1f}s", flush=True)
        reference_world = e2e_world.visma_world(admins, create_latency=0, read_latency=0, budget=1, window=1)
        self.prebuilt = e2e_world.payloads(e2e_world.nmbrs_world(admins), reference_world, admins)

    # -- the two contenders --

    def pipeline(self, create_latency: float, read_latency: float, label: str) -> Phase:
        import e2e_world

        from nmbrs_visma.clients.visma_net import VismaNetClient
        from nmbrs_visma.flows import administrations as administrations_module
        from nmbrs_visma.flows import post_payroll_journals as flow_module
        from nmbrs_visma.flows.administrations import Administrations
        from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals
        from nmbrs_visma.results import Status

        batches: list[int] = []  # companies per plan step

        def counted(reads: Any, *args: Any) -> None:
            batches.append(len(reads))

        from nmbrs_visma import outcomes
        from nmbrs_visma.flows.connections import Connections

        stages = [  # the flow's steps before, during and after its administrations' lines
            timed(flow_module, "load_mappings"),
            timed(flow_module, "connect_accounts"),
            timed(Administrations, "run"),
            timed(administrations_module, "plan_read_companies", after=counted),
            timed(Connections, "close"),
            timed(outcomes, "record_pass"),
            timed(flow_module, "publish_results"),
        ]

        self.fresh_visma(create_latency, read_latency)
        os.environ["NMBRS_VISMA_LEDGER_URL"] = self.ledger_url(label)
        sampler = Sampler()
        clock = CpuClock(self.emulators.pids)
        with (
            PeakRss() as memory,
            AtOnce(VismaNetClient, "create_journal_transaction") as creates,
            sampler if self.args.profile else contextlib.nullcontext(),
        ):
            cpu = clock.read()
            started = time.perf_counter()
            rows = pass_rows(post_payroll_journals(period=e2e_world.PERIOD, return_state=True))
            wall = time.perf_counter() - started
            cpu = clock.read() - cpu
        for owner, name, original, spent in stages:
            setattr(owner, name, original)
            print(f"  stage {name:<20} {spent[0]:8.2f}s ({label})")
        print(f"  plan steps: {len(batches)} for {sum(batches)} companies, at most {max(batches, default=0)} at once")
        print(f"  most creates at once: {creates.most} ({label}; limit: --workers)")
        if creates.most > self.args.workers:
            raise SystemExit(f"the pipeline had {creates.most} creates at once, over --workers {self.args.workers}")
        if self.args.profile:
            total = sum(sampler.counts.values()) or 1
            print(f"\nwhere the pipeline's threads spent their time ({label}), share of thread samples:")
            for where, count in sampler.top():
                print(f"  {count / total:6.1%}  {where}")
        statuses = Counter(row.status for row in rows)
        stats = self.emulators.stats()
        expected = 3 * self.args.admins
        if statuses != Counter({Status.SENT: expected}) or stats.booked != expected:
            problems = [f"{r.company} {r.period} {r.status}: {r.reason}" for r in rows if r.status != Status.SENT]
            raise SystemExit(
                f"pipeline did not post everything once: {dict(statuses)}, ledger {stats.booked}\n"
                + "\n".join(problems[:10])
            )
        return Phase("pipeline", wall, stats.requests, stats.tokens, memory.start, memory.peak, cpu, creates.most)

    def bare(self, create_latency: float, read_latency: float) -> Phase:
        url = self.fresh_visma(create_latency, read_latency)
        clock = CpuClock(self.emulators.pids)
        cpu = clock.read()
        started = time.perf_counter()
        creating = asyncio.run(bare_post(url, self.prebuilt, self.args.workers))
        wall = time.perf_counter() - started
        cpu = clock.read() - cpu
        stats = self.emulators.stats()
        if stats.booked != 3 * self.args.admins:
            raise SystemExit(f"bare run booked {stats.booked}, expected {3 * self.args.admins}")
        return Phase("bare", wall, stats.requests, stats.tokens, cpu=cpu, creating=creating)

    def stop(self) -> None:
        if self.emulators is not None:
            self.emulators.stop()


def timed(owner: Any, name: str, after: Any = None) -> tuple[Any, str, Any, list[float]]:
    """Wrap a stage function (of the flow module, or a method) to add up its wall time; `after(*args)` runs
    after each call."""
    original = getattr(owner, name)
    spent = [0.0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started
            if after is not None:
                after(*args)

    setattr(owner, name, wrapper)
    return owner, name, original, spent


async def bare_post(url: str, payloads: dict[str, list[bytes]], concurrency: int) -> int:
    """The floor: a token per tenant, then its payloads in order; 429s waited out by Retry-After. Returns the
    most creates it had in flight at once."""
    import httpx2

    from nmbrs_visma.sandbox.visma_net import SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET

    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    creating = [0, 0]  # now, most
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

        async def send(method: str, path: str, **kwargs: Any) -> Any:
            while True:
                response = await client.request(method, path, **kwargs)
                if response.status_code == 429:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                response.raise_for_status()
                return response

        async def administration(tenant: str, bodies: list[bytes]) -> None:
            async with gate:
                token = await send(
                    "POST",
                    "/connect/token",
                    data={"grant_type": "client_credentials", "tenant_id": tenant},
                    auth=(SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET),
                )
                headers = {
                    "Authorization": f"Bearer {token.json()['access_token']}",
                    "Content-Type": "application/json",
                }
                for body in bodies:
                    creating[0] += 1
                    creating[1] = max(creating)
                    try:
                        await send("POST", "/v2/journaltransaction", content=body, headers=headers)
                    finally:
                        creating[0] -= 1

        await asyncio.gather(*(administration(tenant, bodies) for tenant, bodies in payloads.items()))
    return creating[1]


def report(label: str, pipeline: Phase, bare: Phase, admins: int) -> float:
    ratio = pipeline.wall / bare.wall
    per_admin = sum(pipeline.requests.values()) / admins
    print(f"\n[{label}]")
    print(f"  pipeline wall {pipeline.wall:8.2f}s   bare wall {bare.wall:8.2f}s   ratio {ratio:.2f}")
    print(f"  pipeline requests per administration: {per_admin:.2f} (+ {pipeline.tokens / admins:.2f} token)")
    for kind, count in sorted(pipeline.requests.items()):
        print(f"    {kind:<28} {count / admins:6.2f} per administration  {count / admins / 3:6.2f} per period")
    print(f"  most creates at once: pipeline {pipeline.creating}, bare {bare.creating}")
    bare_requests = sum(bare.requests.values()) / admins
    print(f"  bare requests per administration: {bare_requests:.2f} (+ {bare.tokens / admins:.2f} token)")
    for phase in (pipeline, bare):
        spent = ", ".join(f"{owner} {seconds / admins * 1000:.0f} ms" for owner, seconds in sorted(phase.cpu.items()))
        print(f"  {phase.name} CPU per administration: {spent}")
    growth = pipeline.rss_peak - pipeline.rss_start
    print(
        f"  pipeline RSS {pipeline.rss_start:.0f} MB -> peak {pipeline.rss_peak:.0f} MB "
        f"(+{growth:.0f} MB, {growth * 1024 / admins:.0f} KB per administration; the emulators run apart)"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admins", type=int, default=500)
    parser.add_argument("--workers", type=int, default=8, help="administrations in flight (both contenders)")
    parser.add_argument("--create-latency", type=float, default=0.150)
    parser.add_argument("--read-latency", type=float, default=0.060)
    parser.add_argument("--budget", type=int, default=60, help="API calls per tenant per window")
    parser.add_argument("--window", type=float, default=60.0, help="rate window, seconds")
    parser.add_argument("--profile", action="store_true", help="print where the pipeline's threads spend time")
    parser.add_argument(
        "--ledger",
        default=None,
        help="posting ledger: a PostgreSQL server URL (postgresql://user@host:port/db; each run gets a fresh "
        "database on it); default a fresh SQLite file per run",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="latency pairs (pipeline, then bare) to run; the median ratio counts"
    )
    args = parser.parse_args(argv)
    home = _prepare_environment(args.workers)

    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        bench = Bench(args, home)
        try:
            bench.setup()
            pairs = [
                (
                    bench.pipeline(args.create_latency, args.read_latency, f"latency-{number}"),
                    bench.bare(args.create_latency, args.read_latency),
                )
                for number in range(1, max(1, args.repeat) + 1)
            ]
            fast = bench.pipeline(0.0, 0.0, "zero"), bench.bare(0.0, 0.0)
        finally:
            bench.stop()
    print(f"\n{args.admins} administrations x 400 lines x 3 periods, {args.workers} in flight")
    ratios = [pipeline.wall / bare.wall for pipeline, bare in pairs]
    slow = sorted(pairs, key=lambda pair: pair[0].wall / pair[1].wall)[(len(pairs) - 1) // 2]  # the median pair
    if len(pairs) > 1:
        print(f"latency pairs' ratios, in the order run: {', '.join(f'{r:.2f}' for r in ratios)} (the median below)")
    ratio = report(
        f"latency: create {args.create_latency * 1000:.0f} ms, read {args.read_latency * 1000:.0f} ms, "
        f"budget {args.budget}/{args.window:g}s per tenant",
        *slow,
        args.admins,
    )
    report("zero latency", *fast, args.admins)
    first = pairs[0][0]  # the run that starts from the process as set up: later ones start from its high-water mark
    growth = first.rss_peak - first.rss_start
    print(
        f"\nmemory, first pipeline run: RSS {first.rss_start:.0f} MB -> peak {first.rss_peak:.0f} MB "
        f"(+{growth:.0f} MB, {growth * 1024 / args.admins:.0f} KB per administration)"
    )
    overhead_ms = (fast[0].wall - fast[1].wall) / args.admins * 1000
    print(f"\npipeline own overhead at zero latency: {overhead_ms:.1f} ms per administration")
    print(f"ratio={ratio:.2f} overhead_ms={overhead_ms:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
