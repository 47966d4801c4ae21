"""The ledger changing under a run: a financial period closed between the eligibility check and the post, an
account deactivated mid-run. Visma.net refuses the create; the run says so for that transaction only, and
nothing is half booked or booked twice when it is run again."""

from __future__ import annotations

from collections import Counter

import pytest

from nmbrs_visma.results import Status

from .support import (
    Countdown,
    assert_ledger,
    assert_rows_match_ledger,
    is_create,
    is_lookup,
    on_request,
    post,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_a_period_closed_between_the_check_and_the_post_is_refused_for_that_company_only(sandboxes) -> None:
    world = sandboxes.visma_world
    tenant = world.tenants["1000001"]

    def close_march() -> None:
        tenant.close_period("202603")

    def march_lookup(request) -> bool:  # the look-up right before 1001's create: the check has passed
        return is_lookup(request) and request.tenant_id == "1000001" and "periodId=202603" in request.query

    on_request(world, Countdown(march_lookup, 1, close_march))
    rows = post(companies=[1001, 1002])

    (closed,) = [row for row in rows if row.company == 1001]
    assert closed.status is Status.FAILED and closed.period == "202603"
    assert "refused" in closed.reason and "202603 is closed" in closed.reason, closed.reason
    assert [row.status for row in rows if row.company == 1002] == [Status.SENT]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1002]))  # nothing of 1001

    (again,) = [row for row in post(companies=[1001]) if row.company == 1001]
    assert again.status is Status.REFUSED and "period_closed" in again.codes, again  # now the check sees it
    assert_ledger(sandboxes, [1002])


def test_an_account_deactivated_mid_run_fails_the_rest_and_a_rerun_completes_once(sandboxes) -> None:
    world = sandboxes.visma_world
    tenant = world.tenants["1000001"]
    description, _ = tenant.accounts["4000"]

    def deactivate() -> None:
        tenant.accounts["4000"] = (description, False)

    # 1003 January is created first; from the second create on, account 4000 (gross wages) is inactive
    on_request(world, Countdown(lambda r: is_create(r) and r.tenant_id == "1000001", 2, deactivate))
    rows = post(companies=[1001, 1003])

    counted = Counter(row.status for row in rows)
    assert counted == Counter({Status.SENT: 1, Status.FAILED: 3}), rows
    (sent,) = [row for row in rows if row.status is Status.SENT]
    assert (sent.company, sent.period) == (1003, "202601")
    for row in rows:
        if row.status is Status.FAILED:
            assert "Account 4000 is inactive" in row.reason, row.reason
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1001, 1003], complete=False))

    tenant.accounts["4000"] = (description, True)  # the bookkeeper re-activates it
    again = post(companies=[1001, 1003])
    assert Counter(row.status for row in again) == Counter({Status.ALREADY_SENT: 1, Status.SENT: 3}), again
    assert_rows_match_ledger(again, assert_ledger(sandboxes, [1001, 1003]))
