"""The payroll admin's view, in a real headless Chromium over a real Prefect server with the project deployed
(tests/ui/conftest.py): the manual deployment's Custom run form explains itself and refuses a malformed
period; the mapping block's form tells cost center and cost unit apart; a run with a refusal, started from the
form, ends FAILED with a message naming the company on its run page, and the Artifacts page has the status per
administration and period. Each check leaves a screenshot (docs/screenshots/take.py refreshes the README's).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.deployment.harness import wait_for_flow_run

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.ui.conftest import UiStack

pytestmark = pytest.mark.slow

REFUSED_COMPANY, REFUSED_NAME = 2001, "Slapende Holding BV"  # the demo company on a blocked debtor
REFUSED_ADMINISTRATION = "1000003/1/L"  # its administration (sandbox/demo_data.py)
RUN_PERIOD = "2026/03"  # a payroll period YYYY/NN: the demo month for the monthly companies


def _normal(text: str) -> str:
    """Whitespace as the page renders it (the schema's descriptions carry line breaks)."""
    return " ".join(text.split())


def form_property(page: Page, title: str, within: Locator | None = None) -> Locator:
    """The form section of the property titled `title` (the UI adds " (Optional)" to optional ones)."""
    scope = within if within is not None else page
    label = page.locator(  # the run form's labels, and the block form's (an older form component)
        ".schema-form-property__label, .p-label__label", has_text=re.compile(rf"^{re.escape(title)}( \(Optional\))?$")
    )
    return scope.locator(".schema-form-property").filter(has=label)


def set_text(prop: Locator, value: str) -> None:
    """Type into a text property, switching an optional one (`str | None`) to its text input first."""
    from playwright.sync_api import Error, expect

    field = prop.locator("textarea, input[type=text]").first
    switch = prop.get_by_role("button", name="str", exact=True)
    for _ in range(3):  # the switch re-renders while the form settles: a click may be lost
        if field.is_visible():
            break
        if switch.count():
            switch.first.click()
        try:
            field.wait_for(timeout=5_000)
        except Error:
            continue
    field.fill(value)
    expect(field).to_have_value(value)


def set_switch(prop: Locator, on: bool) -> None:
    from playwright.sync_api import expect

    switch = prop.get_by_role("switch")
    if (switch.get_attribute("aria-checked") == "true") != on:
        switch.click()
    expect(switch).to_have_attribute("aria-checked", "true" if on else "false")


def _runs_of(client: Any, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


BUSY = 503  # the Prefect server on SQLite refuses a write that meets another one; the UI says "Something went wrong"


def submit(page: Page, attempts: int = 3) -> None:
    """Submit the run form and wait for the server's answer to its create. A busy answer (the SQLite server under
    the suite's load) is submitted again, as the person would; any other refusal fails the test with its body."""
    for attempt in range(1, attempts + 1):
        with page.expect_response(lambda response: "/create_flow_run" in response.url, timeout=30_000) as answer:
            page.get_by_role("button", name="Submit").click()
        response = answer.value
        if response.status < 400:
            return
        if response.status != BUSY or attempt == attempts:
            raise AssertionError(f"the server refused the run form: HTTP {response.status}: {response.text()}")
        print(f"run form submit {attempt}: the server was busy (HTTP {response.status}), submitting again")
        page.wait_for_timeout(1_000 * attempt)


def _shot(page: Page, folder: Path, name: str, *, clip_to: Locator | None = None) -> Path:
    path = folder / f"{name}.png"
    if clip_to is not None:
        clip_to.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    return path


def test_custom_run_form_explains_the_parameters_and_refuses_a_malformed_period(
    ui_stack: UiStack, page: Page, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    manual = ui_stack.deployments["manual"]
    properties = manual.parameter_openapi_schema["properties"]
    page.goto(f"{ui_stack.ui_url}/deployments/deployment/{manual.id}/run", wait_until="networkidle")
    form_property(page, "Period").wait_for()  # the form is rendered

    for name, schema in properties.items():  # every parameter titled and described, as the form shows it
        assert schema.get("title") and schema.get("description"), f"parameter {name} has no title or description"
        prop = form_property(page, schema["title"])
        assert prop.count() == 1, f"the form has no section titled {schema['title']!r} (parameter {name})"
        assert _normal(schema["description"]) in _normal(prop.inner_text()), name
    period = form_property(page, "Period")
    assert "YYYY-MM" in period.inner_text() and "YYYY/NN" in period.inner_text()

    with ui_stack.client() as client:
        runs_before = len(_runs_of(client, manual.id))
    for malformed in ("March", "2026-3"):
        set_text(period, malformed)
        page.get_by_role("button", name="Submit").click()
        expect(period.locator(".p-label__message--failed")).to_contain_text(f"'{malformed}' is not valid")
        assert page.url.endswith("/run"), "the form was submitted with a malformed period"
        if malformed == "March":
            period.scroll_into_view_if_needed()
            _shot(page, screenshots, "custom-run-form")
    time.sleep(2)  # a run created anyway would show up by now
    with ui_stack.client() as client:
        assert len(_runs_of(client, manual.id)) == runs_before, "a malformed period still created a flow run"


def test_mapping_block_form_tells_cost_center_and_cost_unit_apart(
    ui_stack: UiStack, page: Page, screenshots: Path
) -> None:
    from nmbrs_visma.blocks.mapping import AdministrationMappingBlock

    with ui_stack.client() as client:
        document = client.read_block_document_by_name("company-1001", AdministrationMappingBlock.get_block_type_slug())
    page.goto(f"{ui_stack.ui_url}/blocks/block/{document.id}/edit", wait_until="networkidle")
    page.get_by_text("Block names are not editable").wait_for()  # the form is rendered
    text = _normal(page.locator("body").inner_text())
    assert "DimensionSetting" not in text, "a dimension section still carries the model's class name"
    cost_center, cost_unit = form_property(page, "Cost center"), form_property(page, "Cost unit")
    assert cost_center.count() == 1 and cost_unit.count() == 1, text
    center_text, unit_text = _normal(cost_center.inner_text()), _normal(cost_unit.inner_text())
    assert "cost center" in center_text.lower() and "cost unit" not in center_text.lower(), center_text
    assert "cost unit" in unit_text.lower() and "cost center" not in unit_text.lower(), unit_text
    for section in (cost_center, cost_unit):  # each section's own fields, described
        assert form_property(page, "Segment description", within=section).count() == 1
    page.set_viewport_size({"width": 1280, "height": 1000})  # both sections in one picture
    cost_center.evaluate("section => section.scrollIntoView({block: 'start'})")
    assert cost_unit.locator(".p-label__label").first.is_visible()
    _shot(page, screenshots, "mapping-block-form")


def test_a_run_with_a_refusal_fails_with_its_message_and_shows_the_status_per_administration_and_period(
    ui_stack: UiStack, page: Page, screenshots: Path
) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from nmbrs_visma.tasks.report import status_artifact_key

    manual = ui_stack.deployments["manual"]
    with ui_stack.client() as client:
        before = {run.id for run in _runs_of(client, manual.id)}

    # a Custom run from the form: the period, every mapped company, dry run off
    page.goto(f"{ui_stack.ui_url}/deployments/deployment/{manual.id}/run", wait_until="networkidle")
    set_text(form_property(page, "Period"), RUN_PERIOD)
    set_switch(form_property(page, "Dry run (send nothing)"), on=False)
    submit(page)

    with ui_stack.client() as client:
        deadline = time.monotonic() + 30
        while not (created := [run for run in _runs_of(client, manual.id) if run.id not in before]):
            if time.monotonic() > deadline:
                _shot(page, screenshots, "submit-failed")
                raise AssertionError(f"submitting the form created no flow run:\n{page.locator('body').inner_text()}")
            time.sleep(0.5)
        (run,) = created
        try:
            finished = wait_for_flow_run(client, run.id, timeout=240)
        except AssertionError:
            ui_stack.print_logs()
            raise
        assert finished.parameters["period"] == RUN_PERIOD and finished.parameters["dry_run"] is False
        state = finished.state
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    message = state.message or ""
    assert state.type.value == "FAILED", f"a run with a refusal ended {state.type.value}: {message!r}"
    assert f"company {REFUSED_COMPANY}" in message and REFUSED_NAME in message and "refused" in message, message

    # the run page: FAILED in its header, the message in its details
    page.goto(f"{ui_stack.ui_url}/runs/flow-run/{run.id}?tab=Details", wait_until="networkidle")
    page.get_by_text("State Message", exact=True).wait_for()
    header = page.locator(".page-heading").first
    assert "Failed" in header.inner_text(), header.inner_text()
    more = page.get_by_text("See More", exact=True)
    if more.count():
        more.first.click()
    details = page.locator(".flow-run-details, .p-key-value").filter(has_text="State Message").first
    shown = _normal(page.locator("body").inner_text())
    assert f"company {REFUSED_COMPANY} {REFUSED_NAME}" in shown, shown[-3000:]
    assert _normal(message) in shown, "the run page does not show the whole state message"
    page.set_viewport_size({"width": 1280, "height": 1080})  # the header, the timeline and the message at once
    page.evaluate("window.scrollTo(0, 0)")
    assert details.is_visible()
    _shot(page, screenshots, "failed-run")

    # the Artifacts page: the status of each administration and payroll period of the run
    status_keys = {artifact.key for artifact in artifacts if artifact.key and artifact.key.startswith("status-")}
    refused_key = status_artifact_key(REFUSED_ADMINISTRATION, "2026-03", False)
    assert refused_key in status_keys, status_keys
    page.goto(f"{ui_stack.ui_url}/artifacts", wait_until="networkidle")
    listing = _normal(page.locator("body").inner_text())
    for key in status_keys:
        assert key in listing, f"the Artifacts page does not list {key}"
    _shot(page, screenshots, "artifacts")
    (refused_artifact,) = [artifact for artifact in artifacts if artifact.key == refused_key]
    page.goto(f"{ui_stack.ui_url}/artifacts/artifact/{refused_artifact.id}", wait_until="networkidle")
    page.get_by_text("debtor is blocked").first.wait_for()
    artifact_text = _normal(page.locator("body").inner_text())
    assert str(REFUSED_COMPANY) in artifact_text and REFUSED_NAME in artifact_text, artifact_text[-3000:]
    assert "debtor is blocked" in artifact_text, artifact_text[-3000:]
    _shot(page, screenshots, "artifact-refused-administration")
