"""Companies planned together (tasks/plan.py `plan_companies`, `plan_read_companies`).

One `build_many` over several companies' runs must give each company exactly what planning it alone gives:
the same rows, the same postings, byte for byte the same payloads, whatever mix of sendable, refused, empty
and unreadable companies a batch holds. A batch that cannot be planned as a whole (a broken frame, a run id
seen twice) is planned company by company, so a failure stays with its own company.
"""

from __future__ import annotations

import time
import uuid

import pytest

from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml
from nmbrs_visma.results import Status
from nmbrs_visma.tasks.extract import CompanyJournals, RunJournal
from nmbrs_visma.tasks.plan import CompanyPlan, CompanyRead, plan_companies, plan_company, plan_read_companies
from tests.journals.builders import MARCH_WITH_CORRECTION, demo_reference, journal_xml, line_xml, make_mapping, make_run

UNKNOWN_ACCOUNT = journal_xml(
    [("20260325", "3/2026", [line_xml("9999", "10,00", "debit"), line_xml("1700", "10,00", "credit")])]
)


def _company(number: int, *runs: tuple[str, bytes | None], error: str | None = None) -> CompanyRead:
    journals = CompanyJournals(
        company=number,
        company_name=f"Company {number}",
        runs=[
            RunJournal(make_run(number, run_id=run_id, number=index), lines=parse_journal_xml(xml))
            if xml is not None
            else RunJournal(make_run(number, run_id=run_id, number=index), error="document not ready")
            for index, (run_id, xml) in enumerate(runs, start=1)
        ],
        error=error,
    )
    return CompanyRead(journals, make_mapping(number), demo_reference())


def _alone(company: CompanyRead) -> CompanyPlan:
    return plan_company(company.journals, company.mapping, company.reference)


def _mix() -> list[CompanyRead]:
    return [
        _company(1002, ("run-1002", MARCH_WITH_CORRECTION)),  # sendable: two periods
        _company(1003, ("run-1003", UNKNOWN_ACCOUNT)),  # refused
        _company(1004),  # no run to post: nothing to plan (the runs finder reports it)
        _company(1005, error="the journal file could not be read"),  # unreadable source
        _company(1006, ("run-1006a", MARCH_WITH_CORRECTION), ("run-1006b", None)),  # one run unreadable
        _company(1007, ("run-1007a", MARCH_WITH_CORRECTION), ("run-1007b", MARCH_WITH_CORRECTION)),  # two runs
    ]


def test_a_batch_plans_each_company_as_planning_it_alone_does() -> None:
    companies = _mix()
    alone = [_alone(company) for company in companies]
    together = plan_companies(companies)
    assert together == alone
    sendable = [plan for plan in together if plan.postings]
    assert [p.postings[0].company for p in sendable] == [1002, 1007]
    assert {row.status for plan in together for row in plan.rows} == {Status.REFUSED}


@pytest.mark.parametrize("broken", ["frame", "run id twice"])
def test_a_batch_that_cannot_be_planned_whole_is_planned_company_by_company(broken: str) -> None:
    companies = _mix()
    if broken == "frame":  # a frame without its amounts: the core refuses the frame, for the whole batch
        journals = companies[0].journals
        lines = journals.runs[0].lines
        assert lines is not None
        runs = [RunJournal(journals.runs[0].run, lines=lines.drop(columns=["debit_cents"]))]
        companies[0] = CompanyRead(
            CompanyJournals(journals.company, journals.company_name, runs), companies[0].mapping, companies[0].reference
        )
    else:  # two companies whose runs share an id: one build over both cannot tell them apart
        companies.append(_company(1008, ("run-1002", MARCH_WITH_CORRECTION)))
    with pytest.raises(ValueError):
        plan_companies(companies)
    planned = plan_read_companies(companies)
    if broken == "frame":
        assert [row.status for row in planned[0].rows] == [Status.FAILED]
        assert "preparing the journals of company 1002 failed" in planned[0].rows[0].reason
        assert planned[0].postings == []
        assert planned[1:] == [_alone(company) for company in companies[1:]]
    else:
        assert planned == [_alone(company) for company in companies]
        assert planned[0].postings and planned[-1].postings


def test_a_plan_request_waits_in_the_planners_queue_and_a_failing_plan_fails_its_waiters() -> None:
    """Requests that arrive while a plan runs are planned together, each gets its own companies' plans in
    order; a batch that raises fails every waiter instead of leaving one hanging."""
    import threading

    from nmbrs_visma.flows import administrations as module
    from nmbrs_visma.flows.administrations import Planner

    calls: list[list[int]] = []
    release = threading.Event()
    original = module.plan_read_companies

    def recorded(reads):  # the first plan waits, so the next two requests queue up behind it
        calls.append([read.journals.company for read in reads])
        if len(calls) == 1:
            release.wait(5)
        return original(reads)

    module.plan_read_companies = recorded
    try:
        planner = Planner()
        results: dict[int, list[CompanyPlan]] = {}
        reads = {number: _company(number, (f"run-{number}", MARCH_WITH_CORRECTION)) for number in (1002, 1003, 1006)}
        first = threading.Thread(target=lambda: results.setdefault(1002, planner.plan([reads[1002]])))
        first.start()
        while not calls:
            threading.Event().wait(0.01)
        others = [
            threading.Thread(target=lambda n=n: results.setdefault(n, planner.plan([reads[n]]))) for n in (1003, 1006)
        ]
        for thread in others:
            thread.start()
        threading.Event().wait(0.2)
        release.set()
        for thread in [first, *others]:
            thread.join(10)
        planner.close()
    finally:
        module.plan_read_companies = original
    assert len(calls) == 2 and sorted(calls[1]) == [1003, 1006]
    for number, read in reads.items():
        assert results[number] == [_alone(read)]

    def broken(reads):
        raise RuntimeError("the planner broke")

    module.plan_read_companies = broken
    try:
        failing = Planner()
        with pytest.raises(RuntimeError, match="planner broke"):
            failing.plan([reads[1002]])
        failing.close()
    finally:
        module.plan_read_companies = original


def test_ahead_locks_ask_for_a_batch_of_administrations_and_the_next_in_one_call_each() -> None:
    """The posting locks go to the Prefect server `LOCK_BATCH` administrations per call, in the order the units
    start: the first unit of a batch to start (whichever it is) asks for its batch and the next one; an
    administration seen twice in a batch, or none (no tenant), is not asked for."""
    from nmbrs_visma.flows.administrations import LOCK_BATCH, AheadLocks
    from nmbrs_visma.tasks.posting import administration_lock_name

    administrations: list[str | None] = [f"tenant-{n}/1/L" for n in range(3 * LOCK_BATCH + 3)]
    administrations[1] = None
    administrations[2] = administrations[0]
    names = [administration_lock_name(a) if a else None for a in administrations]
    calls: list[list[str]] = []
    locks = AheadLocks(administrations, timeout_seconds=5, ask=lambda found: calls.append([r.name for r in found]))

    second = locks.take(LOCK_BATCH + 2)  # a unit of the second batch starts before any other
    assert second is not None and second.name == names[LOCK_BATCH + 2]
    assert calls == [names[LOCK_BATCH : 2 * LOCK_BATCH], names[2 * LOCK_BATCH : 3 * LOCK_BATCH]]
    assert locks.take(LOCK_BATCH) is not None and len(calls) == 2  # its batch and the next: asked for already
    assert locks.take(2 * LOCK_BATCH) is not None and calls[2] == names[3 * LOCK_BATCH :]  # the next: the last 3
    first = locks.take(0)  # its batch now; the next one was asked for already
    assert first is not None and first.name == names[0]
    assert calls[3:] == [[names[0], *names[3:LOCK_BATCH]]]
    assert locks.take(1) is None and locks.take(2) is None  # no tenant; the same administration again
    assert locks.take(3 * LOCK_BATCH + 1) is not None and len(calls) == 4


def test_ahead_locks_given_up_together_free_every_lock_not_held(prefect_api: str) -> None:
    """A pass that stops before some of its units start gives up their reservations at once: the Prefect
    server's slots are free again, not held until the reservations lapse."""
    from prefect.client.orchestration import get_client

    from nmbrs_visma.blocks.locks import ensure_lock
    from nmbrs_visma.flows.administrations import LOCK_BATCH, AheadLocks
    from nmbrs_visma.tasks.posting import administration_lock_name

    run = uuid.uuid4().hex[:8]
    administrations = [f"ahead-{run}-{n}/1/L" for n in range(2 * LOCK_BATCH)]
    for administration in administrations:
        ensure_lock(administration_lock_name(administration))
    locks = AheadLocks(administrations, timeout_seconds=60)
    first = locks.take(0)  # both batches asked for
    assert first is not None
    with first.hold():
        pass

    def active() -> list[int]:
        with get_client(sync_client=True) as client:
            return [
                client.read_global_concurrency_limit_by_name(administration_lock_name(a)).active_slots
                for a in administrations
            ]

    deadline = time.monotonic() + 10
    while not any(active()) and time.monotonic() < deadline:  # granted by the broker's thread
        time.sleep(0.05)
    assert any(active())
    locks.cancel()
    deadline = time.monotonic() + 10
    while any(active()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert active() == [0] * len(administrations)
