"""Show what a run did in the Prefect UI: a table artifact per run, a keyed status artifact per administration,
and for a dry run the exact payloads (JSON files in an output folder, listed and shown in a markdown artifact).

Artifacts hold the status rows and the payloads only: business data, never a credential (payloads carry no
token; the clients add those per request).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections import defaultdict
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from nmbrs_visma.results import StatusRow, artifact_key, markdown_table, sort_rows, summary, table_artifact_rows

logger = logging.getLogger(__name__)

OUTPUT_DIR_ENV = "NMBRS_VISMA_OUTPUT_DIR"
_INLINE_LIMIT = 200_000  # characters of payload shown inline in the dry-run artifact; the files hold all


@dataclass(frozen=True)
class PayloadFile:
    company: int
    administration: str
    period_id: str
    key: str
    path: Path
    content: bytes


def output_dir(now: dt.datetime | None = None) -> Path:
    """Where a dry run writes its payloads: `$NMBRS_VISMA_OUTPUT_DIR/dry-run-<UTC time>`
    (`$NMBRS_VISMA_OUTPUT_DIR` defaults to `./nmbrs-visma-output`)."""
    base = Path(os.environ.get(OUTPUT_DIR_ENV, "nmbrs-visma-output")).expanduser()
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


def publish_results(
    rows: Sequence[StatusRow], *, title: str, run_key: str, dry_run: bool, published: Set[str] = frozenset()
) -> None:
    """The run's table artifact, and the keyed status artifact of each administration not `published` yet
    (best effort: a UI problem never turns a posted run into a failed one)."""
    try:
        create_table_artifact(
            table=table_artifact_rows(rows),
            key=artifact_key(run_key),
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


def publish_administration(administration: str, rows: Sequence[StatusRow], *, title: str, dry_run: bool) -> None:
    """The administration's keyed status artifact: its rows of the run (best effort, like all artifacts)."""
    try:
        create_markdown_artifact(
            markdown=(
                f"# Administration {administration}\n\n{title}: {summary(rows)}"
                + (" (dry run: nothing sent)" if dry_run else "")
                + "\n\n"
                + markdown_table(sort_rows(rows))
                + "\n"
            ),
            key=artifact_key("administration", administration),
            description=f"{administration}: {summary(rows)}",
        )
    except Exception as exc:
        logger.warning("could not create the status artifact of %s: %s", administration, exc)


def publish_payloads(files: Sequence[PayloadFile], *, title: str, run_key: str) -> None:
    """The dry run's payloads: where the files are, and each payload inline (up to a size)."""
    if not files:
        return
    parts = [f"# Dry run: {title}\n", "Nothing was sent. The exact payloads that would be posted:\n"]
    parts += [f"- `{f.path}` (company {f.company}, {f.administration}, period {f.period_id})" for f in files]
    shown = 0
    for payload_file in files:
        text = payload_file.content.decode("utf-8")
        if shown + len(text) > _INLINE_LIMIT:
            parts.append("\n(further payloads only in the files above)")
            break
        shown += len(text)
        parts.append(
            f"\n## {payload_file.period_id} company {payload_file.company} ({payload_file.administration})\n\n"
            f"```json\n{text}\n```"
        )
    try:
        create_markdown_artifact(
            markdown="\n".join(parts), key=artifact_key(run_key, "payloads"), description=f"{title}: payload preview"
        )
    except Exception as exc:
        logger.warning("could not create the payload artifact: %s", exc)
