"""Show what a run did in the Prefect UI: a table artifact per run, a status artifact per administration and
payroll period, and for a dry run the exact payloads (JSON files in an output folder, listed and shown
pretty-printed in a markdown artifact). Dry runs have keys of their own: the UI shows the latest per key, so a
dry run never reads as the month's status.

Artifacts hold the status rows and the payloads only: business data, never a credential (payloads carry no
token; the clients add those per request).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from nmbrs_visma.results import StatusRow, artifact_key, markdown_table, sort_rows, summary, table_artifact_rows

logger = logging.getLogger(__name__)

_INLINE_LIMIT = 200_000  # characters of payload shown inline in the dry-run artifact; the files hold all


@dataclass(frozen=True)
class PayloadFile:
    company: int
    administration: str
    period_id: str
    key: str
    path: Path
    content: bytes


def output_dir(base: Path, now: dt.datetime | None = None) -> Path:
    """Where a dry run writes its payloads: `<base>/dry-run-<UTC time>`, `base` the run's
    `Settings.output_dir` (`NMBRS_VISMA_OUTPUT_DIR`, default `./nmbrs-visma-output`)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return base / f"dry-run-{stamp}"


def write_payload(
    directory: Path, *, company: int, administration: str, period_id: str, key: str, payload: bytes
) -> PayloadFile:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{period_id}-company-{company}-{artifact_key(administration)}-{key}.json"
    path = directory / name
    path.write_bytes(payload)
    return PayloadFile(company, administration, period_id, key, path.resolve(), payload)


def run_artifact_key(run_key: str, dry_run: bool) -> str:
    """The run table's key: a dry run never shares its key with a real post (the UI shows the latest per key)."""
    return artifact_key(run_key, "dry-run") if dry_run else artifact_key(run_key)


def status_artifact_key(administration: str, period: str, dry_run: bool) -> str:
    """The status of one administration and payroll period (`status-<administration>-<period>`), dry runs apart:
    a month keeps its form (`2026-03`), a four-week or week period is `2026-p03` (never the month's key)."""
    return artifact_key("dry-run" if dry_run else "", "status", administration, period.replace("/", "-p") or "none")


def publish_results(
    rows: Sequence[StatusRow], *, title: str, run_key: str, dry_run: bool, published: Set[str] = frozenset()
) -> None:
    """The run's table artifact, and the status artifacts of each administration not `published` yet
    (best effort: a UI problem never turns a posted run into a failed one)."""
    try:
        create_table_artifact(
            table=table_artifact_rows(rows),
            key=run_artifact_key(run_key, dry_run),
            description=f"{title}: {summary(rows)}" + (" (dry run: nothing sent)" if dry_run else ""),
        )
    except Exception as exc:  # artifacts are a view; the rows are returned and recorded regardless
        logger.warning("could not create the result artifact: %s", exc)
    by_administration: dict[str, list[StatusRow]] = defaultdict(list)
    for row in rows:
        if row.administration and row.administration not in published:
            by_administration[row.administration].append(row)
    for administration, admin_rows in sorted(by_administration.items()):
        publish_administration(administration, admin_rows, title=title, dry_run=dry_run)


MarkdownCreator = Callable[..., Any]  # (markdown=, key=, description=): `create_markdown_artifact`'s signature


class StatusArtifacts:
    """Creates a pass's status artifacts through one Prefect client, opened on first use and kept until `close()`:
    one connection for all of them, not a client and a connection per artifact (what `create_markdown_artifact`
    opens each time). Each artifact belongs to the flow run `flow_run_id`, and its creation is announced with the
    same `prefect.artifact.created` event. Use it from one thread (the pass's artifact thread)."""

    def __init__(self, flow_run_id: str | None) -> None:
        self.flow_run_id = UUID(flow_run_id) if flow_run_id else None
        self._client: Any = None

    def create(self, *, markdown: str, key: str, description: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactCreate

        if self._client is None:
            self._client = get_client(sync_client=True).__enter__()
        run = {"flow_run_id": self.flow_run_id} if self.flow_run_id is not None else {}
        self._client.create_artifact(
            ArtifactCreate(type="markdown", key=key, description=description, data=markdown, **run)
        )

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.__exit__(None, None, None)


def publish_administration(
    administration: str,
    rows: Sequence[StatusRow],
    *,
    title: str,
    dry_run: bool,
    create: MarkdownCreator = create_markdown_artifact,
) -> None:
    """The administration's status artifact per payroll period of its rows (the run's period: corrections booked
    into earlier financial periods stay with their run), each reason in full below the table (best effort).
    `create`: how an artifact is made (a pass's `StatusArtifacts.create`, one client for all)."""
    by_period: dict[str, list[StatusRow]] = defaultdict(list)
    for row in rows:
        by_period[row.run_period or row.period].append(row)
    for period, period_rows in sorted(by_period.items()):
        ordered = sort_rows(period_rows)
        reasons = [
            f"- company {row.company} {row.company_name}".rstrip()
            + f", {row.period or 'all periods'}, {row.status.value}: {row.reason}"
            for row in ordered
            if row.reason
        ]
        heading = f"# Administration {administration}, payroll period {period or '(none)'}"
        markdown = (
            f"{heading}\n\n{title}: {summary(ordered)}"
            + (" (dry run: nothing sent)" if dry_run else "")
            + "\n\n"
            + markdown_table(ordered)
            + ("\n\n## Reasons\n\n" + "\n".join(reasons) if reasons else "")
            + "\n"
        )
        try:
            create(
                markdown=markdown,
                key=status_artifact_key(administration, period, dry_run),
                description=f"{administration} {period}: {summary(ordered)}" + (" (dry run)" if dry_run else ""),
            )
        except Exception as exc:
            logger.warning("could not create the status artifact of %s %s: %s", administration, period, exc)


def publish_payloads(files: Sequence[PayloadFile], *, title: str, run_key: str) -> None:
    """The dry run's payloads: where the files are, then each payload pretty-printed in a section of its own, in
    a stable order (company, administration, period, key), up to a size."""
    if not files:
        return
    ordered = sorted(files, key=lambda f: (f.company, f.administration, f.period_id, f.key))
    folders = sorted({str(f.path.parent) for f in ordered})
    parts = [
        f"# Dry run: {title}\n",
        "Nothing was sent. The exact payloads that would be posted, in " + ", ".join(f"`{d}`" for d in folders) + ":\n",
    ]
    parts += [f"- `{f.path.name}`: company {f.company}, {f.administration}, period {f.period_id}" for f in ordered]
    shown = 0
    for payload_file in ordered:
        text = json.dumps(json.loads(payload_file.content), indent=2, ensure_ascii=False)
        if shown + len(text) > _INLINE_LIMIT:
            parts.append("\n(further payloads only in the files above)")
            break
        shown += len(text)
        parts.append(
            f"\n## Company {payload_file.company}, {payload_file.administration}, period {payload_file.period_id}"
            f"\n\n`{payload_file.path.name}`\n\n```json\n{text}\n```"
        )
    try:
        create_markdown_artifact(
            markdown="\n".join(parts),
            key=artifact_key(run_key, "dry-run", "payloads"),
            description=f"{title}: payload preview",
        )
    except Exception as exc:
        logger.warning("could not create the payload artifact: %s", exc)
