"""`nmbrs-visma alerts`: Prefect automations that notify someone when a run of this project's flows goes wrong.

An alert is one Prefect automation (Prefect's own automations API, evaluated by the Prefect server's triggers
and actions services) per notification block: an `EventTrigger`, Reactive, threshold 1, on the flow-run events
`prefect.flow-run.Failed`, `.Crashed` and `.TimedOut` (a timeout is a FAILED state of its own name), of the
flows of this package only, with a `SendNotification` action to the block (Slack, Microsoft Teams, a custom
webhook, e-mail, ...: any `prefect.blocks.notifications.NotificationBlock` the user saved). The flows end FAILED
when a company was refused or a posting failed, with a state message that counts and names them, so that
message is the heart of the notification.

The flows are matched by *name* (the trigger's related `flow` resource), not by the deployments' tag
`nmbrs-visma`: a run started on the command line (`nmbrs-visma post`) has no deployment and no deployment tags,
and a bureau's own deployment of these flows need not carry the tag; a flow name is what every run of this
code has. The names are read from the flows under `nmbrs_visma/flows` when the alert is added; `alerts add`
again brings an alert up to date with a new flow.

The automation is named after its block (`nmbrs-visma alert: slack-webhook/payroll-team`) and tagged
`nmbrs-visma`: adding the same block twice updates the one automation, never makes a second.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from uuid import UUID

from nmbrs_visma.output import fail_with, stdout_console

if TYPE_CHECKING:
    from collections.abc import Callable

    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import BlockDocument
    from prefect.events.schemas.automations import Automation, AutomationCore

ALERT_TAG = "nmbrs-visma"
NAME_PREFIX = "nmbrs-visma alert: "
ALERT_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut")
NOTIFY_CAPABILITY = "notify"  # what every NotificationBlock's schema declares (the server's action checks it)

# Rendered by the Prefect server (prefect/server/events/actions.py: flow_run, flow, deployment are read from the
# API for the triggering event; flow_run.state is the state of the event itself). `ui_url` links with the server's
# own PREFECT_UI_URL (or PREFECT_API_URL); a server started before `prefect config set PREFECT_API_URL` knows
# neither, so the link falls back to the UI address of the profile that ran `alerts add` (RUN_LINK_FALLBACK).
SUBJECT = "nmbrs-visma: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
BODY = """\
{{ flow.name }} run {{ flow_run.name }} ended {{ flow_run.state.name }}\
{% if deployment.name %} (deployment {{ deployment.name }}){% endif %} at {{ flow_run.state.timestamp }}.

{{ flow_run.state.message or "(no state message)" }}

Run: {{ flow_run|ui_url or RUN_LINK_FALLBACK }}
Parameters:{% for name, value in flow_run.parameters.items() if value %} {{ name }}={{ value }}{% endfor %}
"""


def notification_body(ui_url: str | None) -> str:
    """BODY with the link's fallback: the run's page under `ui_url` (the UI the admin uses), else its id."""
    if ui_url:
        fallback = f"({json.dumps(ui_url.rstrip('/') + '/runs/flow-run/')} ~ flow_run.id)"
    else:
        fallback = '("flow run " ~ flow_run.id)'
    return BODY.replace("RUN_LINK_FALLBACK", fallback)


Format = Literal["table", "json"]
T = TypeVar("T")


class AlertError(Exception):
    """A one-line reason an alerts command could not do its work (no block of that name, no server, ...)."""


@dataclass(frozen=True)
class NotificationTarget:
    """A saved notification block: its type's slug, its name and its document id (what the action names)."""

    block_type: str
    name: str
    block_document_id: UUID

    @property
    def ref(self) -> str:
        return f"{self.block_type}/{self.name}"


@dataclass(frozen=True)
class Alert:
    """One of this project's alert automations, as `alerts list` shows it."""

    automation_id: UUID
    block: str
    enabled: bool
    block_found: bool
    events: tuple[str, ...]
    flows: tuple[str, ...]

    @property
    def state(self) -> str:
        if not self.block_found:
            return "no block"
        return "on" if self.enabled else "paused"


# -- the automation ------------------------------------------------------------------------------------------


def project_flow_names() -> tuple[str, ...]:
    """The names of the Prefect flows defined under `nmbrs_visma/flows`, sorted (every module is imported)."""
    from prefect import Flow

    import nmbrs_visma.flows as package

    names: set[str] = set()
    for module_info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        module = importlib.import_module(module_info.name)
        names.update(value.name for value in vars(module).values() if isinstance(value, Flow))
    return tuple(sorted(names))


def automation_name(target: NotificationTarget) -> str:
    return NAME_PREFIX + target.ref


def alert_automation(target: NotificationTarget, flows: tuple[str, ...], ui_url: str | None = None) -> AutomationCore:
    """The automation of one alert: a Reactive trigger (threshold 1, each flow run on its own) on the failed,
    crashed or timed-out runs of `flows`, and one notification through the block (`ui_url`: see BODY)."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    flows = tuple(sorted(set(flows)))
    if not flows:
        raise AlertError("no flow found under nmbrs_visma/flows to alert on")
    trigger = EventTrigger(
        expect=set(ALERT_EVENTS),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(flows)},
        for_each={"prefect.resource.id"},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )
    action = SendNotification(
        block_document_id=target.block_document_id, subject=SUBJECT, body=notification_body(ui_url)
    )
    return AutomationCore(
        name=automation_name(target),
        description=(
            f"Notifies {target.ref} when a run of {', '.join(flows)} ends Failed, Crashed or TimedOut, with the "
            "run's state message and a link. Made by `nmbrs-visma alerts add`."
        ),
        enabled=True,
        tags=[ALERT_TAG],
        trigger=trigger,
        actions=[action],
    )


def _essence(automation: AutomationCore) -> dict[str, Any]:
    """What makes two alert automations the same (ids and timestamps aside)."""
    data = automation.model_dump(mode="json")
    trigger = dict(data["trigger"])
    trigger.pop("id", None)
    for key in ("expect", "for_each", "after"):
        trigger[key] = sorted(trigger.get(key) or [])
    related = trigger.get("match_related")
    if isinstance(related, dict) and isinstance(related.get("prefect.resource.name"), list):
        trigger["match_related"] = {**related, "prefect.resource.name": sorted(related["prefect.resource.name"])}
    keys = ("name", "description", "enabled", "tags", "actions", "actions_on_trigger", "actions_on_resolve")
    return {"trigger": trigger, **{key: data.get(key) for key in keys}}


# -- the Prefect API -----------------------------------------------------------------------------------------


def _client() -> SyncPrefectClient:
    """A client of the Prefect server the profile names; never a temporary one (an alert must outlive us)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise AlertError(
            "alerts live on a Prefect server and none is configured: start one (prefect server start) and point "
            "the profile at it (prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    return get_client(sync_client=True)


def _api_url() -> str:
    from prefect.settings import get_current_settings

    return str(get_current_settings().api.url)


def _ui_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().ui_url


def _target(document: BlockDocument) -> NotificationTarget:
    slug = document.block_type.slug if document.block_type else "?"
    return NotificationTarget(block_type=slug, name=str(document.name), block_document_id=document.id)


def _is_notification(document: BlockDocument) -> bool:
    return document.block_schema is not None and NOTIFY_CAPABILITY in document.block_schema.capabilities


def _no_block(ref: str) -> AlertError:
    return AlertError(
        f"no notification block named {ref}; make one in the Prefect UI (Blocks, + : Slack Webhook, Microsoft "
        'Teams Webhook, Custom Webhook, ...) or in code (SlackWebhook(url=...).save("payroll-team")), then '
        "`nmbrs-visma alerts add --block payroll-team`"
    )


def find_notification_block(client: SyncPrefectClient, ref: str) -> NotificationTarget:
    """The notification block `ref` names: `block-type-slug/name`, or a name unique across notification types."""
    from prefect.client.schemas.filters import (
        BlockDocumentFilter,
        BlockDocumentFilterName,
        BlockSchemaFilter,
        BlockSchemaFilterCapabilities,
    )
    from prefect.exceptions import ObjectNotFound

    ref = ref.strip()
    if not ref:
        raise AlertError("give the name of a notification block: --block NAME (or TYPE/NAME)")
    slug, _, name = ref.rpartition("/")
    if slug:
        try:
            document = client.read_block_document_by_name(name, slug, include_secrets=False)
        except ObjectNotFound:
            raise _no_block(ref) from None
        if not _is_notification(document):
            raise AlertError(f"block {ref} is not a notification block (it cannot send a message)")
        return _target(document)
    response = client.request(
        "POST",
        "/block_documents/filter",
        json={
            "block_documents": BlockDocumentFilter(name=BlockDocumentFilterName(any_=[name])).model_dump(mode="json"),
            "block_schemas": BlockSchemaFilter(
                block_capabilities=BlockSchemaFilterCapabilities(all_=[NOTIFY_CAPABILITY])
            ).model_dump(mode="json"),
            "include_secrets": False,
        },
    )
    from prefect.client.schemas.objects import BlockDocument

    found = [_target(document) for document in BlockDocument.model_validate_list(response.json())]
    if not found:
        raise _no_block(ref)
    if len(found) > 1:
        refs = ", ".join(sorted(target.ref for target in found))
        raise AlertError(f"several notification blocks are named {name} ({refs}): give one as TYPE/NAME")
    return found[0]


def _read_alert_automations(client: SyncPrefectClient) -> list[Automation]:
    from prefect.events.filters import AutomationFilter, AutomationFilterTags

    automations = client.read_automations(automations=AutomationFilter(tags=AutomationFilterTags(all_=[ALERT_TAG])))
    return sorted(
        (automation for automation in automations if automation.name.startswith(NAME_PREFIX)),
        key=lambda automation: (automation.name, str(automation.id)),
    )


def _block_exists(client: SyncPrefectClient, automation: Automation) -> bool:
    from prefect.events.actions import SendNotification
    from prefect.exceptions import ObjectNotFound

    for action in automation.actions:
        if isinstance(action, SendNotification):
            try:
                client.read_block_document(action.block_document_id, include_secrets=False)
            except ObjectNotFound:
                return False
    return True


def _as_alert(client: SyncPrefectClient, automation: Automation) -> Alert:
    trigger = automation.trigger
    related = getattr(trigger, "match_related", None)
    specs = related if isinstance(related, list) else [related] if related is not None else []
    flows = sorted({name for spec in specs for name in (spec.get("prefect.resource.name") or [])})
    events = sorted(event.removeprefix("prefect.flow-run.") for event in getattr(trigger, "expect", set()))
    return Alert(
        automation_id=automation.id,
        block=automation.name.removeprefix(NAME_PREFIX),
        enabled=automation.enabled,
        block_found=_block_exists(client, automation),
        events=tuple(events),
        flows=tuple(flows),
    )


def add_alert(ref: str) -> tuple[Literal["added", "updated", "unchanged"], Alert]:
    """Make (or bring up to date) the one alert automation of the notification block `ref`."""
    flows = project_flow_names()
    with _client() as client:
        target = find_notification_block(client, ref)
        wanted = alert_automation(target, flows, _ui_url())
        existing = client.read_automations_by_name(wanted.name)
        if not existing:
            automation_id = client.create_automation(wanted)
            outcome: Literal["added", "updated", "unchanged"] = "added"
        else:
            # two `add`s at one moment make two: keep one (one already as wanted, if there is one)
            keep, *extra = sorted(existing, key=lambda a: (_essence(a) != _essence(wanted), str(a.id)))
            for duplicate in extra:
                client.delete_automation(duplicate.id)
            automation_id = keep.id
            if not extra and _essence(keep) == _essence(wanted):
                outcome = "unchanged"
            else:
                client.update_automation(keep.id, wanted)
                outcome = "updated"
        automation = client.read_automation(automation_id)
        if automation is None:  # deleted between our calls
            raise AlertError(f"the alert for {target.ref} vanished while it was being made; run the command again")
        return outcome, _as_alert(client, automation)


def list_alerts() -> list[Alert]:
    """This project's alert automations on the Prefect server, by block."""
    with _client() as client:
        return [_as_alert(client, automation) for automation in _read_alert_automations(client)]


def remove_alerts(ref: str | None, *, every: bool = False) -> list[Alert]:
    """Delete the alert of block `ref` (`TYPE/NAME`, or a name unique among the alerts), or every one of this
    project's alerts; the notification blocks stay. Returns what was removed (empty: nothing matched)."""
    if not every and not (ref and ref.strip()):
        raise AlertError("say which alert to remove: --block NAME (or TYPE/NAME), or --all")
    with _client() as client:
        automations = _read_alert_automations(client)
        if every:
            chosen = automations
        else:
            wanted = str(ref).strip()
            by_ref = [a for a in automations if a.name.removeprefix(NAME_PREFIX) == wanted]
            by_name = [a for a in automations if a.name.removeprefix(NAME_PREFIX).rpartition("/")[2] == wanted]
            chosen = by_ref or by_name
            if len({a.name for a in chosen}) > 1:
                refs = ", ".join(sorted({a.name.removeprefix(NAME_PREFIX) for a in chosen}))
                raise AlertError(f"several alerts send to a block named {wanted} ({refs}): give one as TYPE/NAME")
        removed = [_as_alert(client, automation) for automation in chosen]
        for automation in chosen:
            client.delete_automation(automation.id)
        return removed


# -- the command line ----------------------------------------------------------------------------------------


def _guarded(work: Callable[[], T]) -> T:
    """Run `work()`, turning the Prefect server's refusal or absence into an AlertError that says so in one line;
    any other failure propagates, for `_failed` to print as every command prints one."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        return work()
    except PrefectHTTPStatusError as exc:
        detail = " ".join(exc.response.text.split())[:300]
        raise AlertError(
            f"the Prefect server at {_api_url()} refused the request ({exc.response.status_code}): {detail}"
        ) from exc
    except httpx.HTTPError as exc:
        raise AlertError(
            f"cannot reach the Prefect server at {_api_url()} ({exc}); is `prefect server start` running?"
        ) from exc


def _failed(exc: Exception) -> int:
    """An alerts command's failure, printed by the shared printer: an AlertError is its message, anything else
    an unexpected failure (its traceback with NMBRS_VISMA_DEBUG=1); exit status 2."""
    return fail_with(exc, expected=(AlertError,))


def run_alerts_add(block: str) -> int:
    """`nmbrs-visma alerts add --block NAME`: 0 when the alert is there (added, updated or already so), 2 if not."""
    try:
        outcome, alert = _guarded(lambda: add_alert(block))
    except Exception as exc:
        return _failed(exc)
    said = {
        "added": "Added",
        "updated": "Updated",
        "unchanged": "Already there:",
    }[outcome]
    console = stdout_console()
    console.print(
        f"{said} alert to {alert.block}: a message when a run of {', '.join(alert.flows)} ends "
        f"{', '.join(alert.events)} (Prefect automation '{NAME_PREFIX}{alert.block}').",
        markup=False,
        soft_wrap=True,
    )
    return 0


def run_alerts_list(output: Format = "table") -> int:
    """`nmbrs-visma alerts list`: this project's alerts (table, or JSON for scripts); 0, or 2 when unreadable."""
    try:
        alerts = _guarded(list_alerts)
    except Exception as exc:
        return _failed(exc)
    if output == "json":
        rows = [{**asdict(alert), "automation_id": str(alert.automation_id), "state": alert.state} for alert in alerts]
        print(json.dumps(rows, indent=2))
        return 0
    console = stdout_console()
    if not alerts:
        console.print("No alerts. `nmbrs-visma alerts add --block NAME` makes one.", markup=False, soft_wrap=True)
        return 0
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Alerts (Prefect automations)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("block / type", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("ends", no_wrap=True)
    table.add_column("flows", no_wrap=True)
    for alert in alerts:
        slug, _, name = alert.block.partition("/")
        table.add_row(
            f"{escape(name)}\n[dim]{escape(slug)}[/]",
            alert.state,
            "\n".join(alert.events),
            "\n".join(alert.flows),
        )
    console.print(table)
    return 0


def run_alerts_remove(block: str | None, every: bool = False) -> int:
    """`nmbrs-visma alerts remove --block NAME | --all`: 0 when removed, 1 when no alert matched, 2 on error."""
    try:
        removed = _guarded(lambda: remove_alerts(block, every=every))
    except Exception as exc:
        return _failed(exc)
    console = stdout_console()
    if not removed:
        what = "no alerts to remove" if every else f"no alert sends to block {block}"
        console.print(f"{what}; `nmbrs-visma alerts list` shows them", markup=False, soft_wrap=True)
        return 0 if every else 1
    for alert in removed:
        console.print(f"Removed alert to {alert.block} (the block itself is kept).", markup=False, soft_wrap=True)
    return 0
