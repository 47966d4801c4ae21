"""The alert automation `nmbrs-visma alerts add` builds, without a server: which events and flows it watches, that
the Prefect server accepts it (its own schema, templates validated), and what the notification says when the
server renders it for a failed run."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from nmbrs_visma.alerts import (
    ALERT_TAG,
    SUBJECT,
    AlertError,
    NotificationTarget,
    _essence,
    alert_automation,
    automation_name,
    notification_body,
    project_flow_names,
)

FLOWS = ("backfill-correction-periods", "post-payroll-journals")


def _target() -> NotificationTarget:
    return NotificationTarget(block_type="slack-webhook", name="payroll-team", block_document_id=uuid4())


def _flow(name: str) -> object:
    """The `flow` related resource of a flow run's state event, as the server attaches it."""
    from prefect.events.schemas.events import RelatedResource

    spec = {"prefect.resource.id": f"prefect.flow.{uuid4()}", "prefect.resource.role": "flow"}
    return RelatedResource({**spec, "prefect.resource.name": name})


def _related(name: str) -> list[object]:
    from prefect.server.events.schemas.events import RelatedResource

    spec = {"prefect.resource.id": f"prefect.flow.{uuid4()}", "prefect.resource.role": "flow"}
    return [RelatedResource({**spec, "prefect.resource.name": name})]


def test_the_flows_are_found_under_the_package() -> None:
    names = project_flow_names()
    assert {"post-payroll-journals", "backfill-correction-periods", "connect-account"} <= set(names)
    assert list(names) == sorted(set(names))


def test_the_trigger_watches_failed_crashed_and_timed_out_runs_of_the_projects_flows_only() -> None:
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import RelatedResource, Resource

    target = _target()
    automation = alert_automation(target, FLOWS)
    assert automation.name == automation_name(target) == "nmbrs-visma alert: slack-webhook/payroll-team"
    assert automation.tags == [ALERT_TAG] and automation.enabled
    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
    assert trigger.posture is Posture.Reactive and trigger.threshold == 1 and trigger.within == timedelta(0)
    assert trigger.for_each == {"prefect.resource.id"}
    (action,) = automation.actions
    assert isinstance(action, SendNotification)
    assert action.block_document_id == target.block_document_id
    assert (action.subject, action.body) == (SUBJECT, notification_body(None))
    (linked,) = alert_automation(target, FLOWS, "http://prefect:4200").actions
    assert isinstance(linked, SendNotification) and linked.body == notification_body("http://prefect:4200")

    run = Resource({"prefect.resource.id": f"prefect.flow-run.{uuid4()}", "prefect.resource.name": "brave-fox"})
    assert trigger.match.includes([run])
    assert trigger.match_related.includes([_flow("post-payroll-journals")])  # type: ignore[union-attr]
    assert trigger.match_related.includes([_flow("backfill-correction-periods")])  # type: ignore[union-attr]
    assert not trigger.match_related.includes([_flow("someone-elses-flow")])  # type: ignore[union-attr]
    tag = RelatedResource({"prefect.resource.id": "prefect.tag.nmbrs-visma", "prefect.resource.role": "tag"})
    assert not trigger.match_related.includes([tag])  # type: ignore[union-attr]


def test_the_server_schema_accepts_it_and_matches_only_our_flows() -> None:
    from prefect.server.events.schemas.automations import AutomationCore as ServerAutomation
    from prefect.server.events.schemas.events import Resource

    automation = ServerAutomation.model_validate(alert_automation(_target(), FLOWS).model_dump(mode="json"))
    run = Resource({"prefect.resource.id": f"prefect.flow-run.{uuid4()}"})
    assert automation.trigger.covers_resources(run, _related("post-payroll-journals"))  # type: ignore[attr-defined]
    assert not automation.trigger.covers_resources(run, _related("other-flow"))  # type: ignore[attr-defined]


def test_the_notification_names_the_run_its_state_its_message_and_links_to_it() -> None:
    from prefect.server.events.actions import JinjaTemplateAction
    from prefect.server.schemas.core import Flow, FlowRun
    from prefect.server.schemas.responses import DeploymentResponse
    from prefect.server.schemas.states import Failed
    from prefect.server.utilities.user_templates import render_user_template_sync
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    JinjaTemplateAction._register_filters_if_needed()  # ui_url and friends, as the server's action does
    flow = Flow(id=uuid4(), name="post-payroll-journals")
    run = FlowRun(
        id=uuid4(),
        name="2026-03 all companies",
        flow_id=flow.id,
        parameters={"period": "2026-03", "companies": [2001], "dry_run": False, "run": None},
        state=Failed(message="1 problem(s): company 2001 refused (debtor blocked)"),
    )
    context = {"flow": flow, "flow_run": run, "deployment": None}
    server_ui = "http://prefect.example:4200"  # the server's own PREFECT_UI_URL: its link wins
    with temporary_settings(updates={PREFECT_UI_URL: server_ui}):
        subject = render_user_template_sync(SUBJECT, context)
        body = render_user_template_sync(notification_body("http://elsewhere:4200"), context)
    assert subject == "nmbrs-visma: post-payroll-journals run 2026-03 all companies Failed"
    assert "ended Failed at" in body and "deployment" not in body  # a run from the command line has none
    assert "\n\n1 problem(s): company 2001 refused (debtor blocked)\n\n" in body
    assert f"\nRun: {server_ui}/runs/flow-run/{run.id}\n" in body
    assert body.endswith("\nParameters: period=2026-03 companies=[2001]")  # the ones given, not every default

    deployment = DeploymentResponse(id=uuid4(), name="manual", flow_id=flow.id)
    context = {**context, "deployment": deployment}
    # a server that knows no UI address (nor an API address to derive one from, as a test session's would)
    with temporary_settings(updates={PREFECT_UI_URL: None, PREFECT_API_URL: None}):
        body = render_user_template_sync(notification_body("http://127.0.0.1:4200/"), context)
        bare = render_user_template_sync(notification_body(None), context)
    assert "(deployment manual)" in body
    assert f"\nRun: http://127.0.0.1:4200/runs/flow-run/{run.id}\n" in body  # the UI `alerts add` was given
    assert f"\nRun: flow run {run.id}\n" in bare  # no address anywhere: the id stands in


def test_same_block_same_essence_and_a_new_flow_changes_it() -> None:
    target = _target()
    assert _essence(alert_automation(target, FLOWS)) == _essence(alert_automation(target, tuple(reversed(FLOWS))))
    assert _essence(alert_automation(target, FLOWS)) != _essence(alert_automation(target, (*FLOWS, "reconcile")))


def test_no_flows_is_an_error_not_an_alert_that_never_fires() -> None:
    with pytest.raises(AlertError, match="no flow"):
        alert_automation(_target(), ())
