"""Companies planned together (tasks/plan.py `plan_companies`, `plan_read_companies`).

One `build_many` over several companies' runs must give each company exactly what planning it alone gives:
the same rows, the same postings, byte for byte the same payloads, whatever mix of sendable, refused, empty
and unreadable companies a batch holds. A batch that cannot be planned as a whole (a broken frame, a run id
seen twice) is planned company by company, so a failure stays with its own company.
"""

from __future__ import annotations

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


def test_the_planner_reserves_a_batchs_administration_locks_in_one_call() -> None:
    """Administrations preparing at once are planned in one batch, and their locks asked for in one call; each
    gets the reservations of its own postings only, and a batch whose reservation fails fails every waiter."""
    import threading

    from nmbrs_visma.flows.administrations import Planner

    calls: list[list[str]] = []
    release = threading.Event()

    def reserve(administrations):  # the Prefect server's call, recorded; the first waits so the rest queue up
        calls.append(list(administrations))
        if len(calls) == 1:
            release.wait(5)
        return {administration: f"lock of {administration}" for administration in administrations}

    planner = Planner(reserve=reserve)
    results: dict[int, object] = {}
    reads = {number: _company(number, (f"run-{number}", MARCH_WITH_CORRECTION)) for number in (1002, 1003, 1006)}
    first = threading.Thread(target=lambda: results.setdefault(1002, planner.plan([reads[1002]])))
    first.start()
    while not calls:  # the first batch is being reserved: the next two requests wait in the queue together
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
    administrations = {n: {p.administration for plan in results[n].plans for p in plan.postings} for n in reads}
    assert all(administrations.values())
    assert len(calls) == 2 and sorted(calls[1]) == sorted(administrations[1003] | administrations[1006])
    for number in reads:
        assert set(results[number].reservations) == administrations[number]

    def broken(administrations):
        raise RuntimeError("the Prefect server is gone")

    failing = Planner(reserve=broken)
    with pytest.raises(RuntimeError, match="server is gone"):
        failing.plan([reads[1002]])
    failing.close()
