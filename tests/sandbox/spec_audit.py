"""What both spec audits share (tests/sandbox/visma_net/test_spec_audit.py, tests/sandbox/nmbrs/test_spec_audit.py):
the checks schemathesis applies to every answer, the findings, and how an operation's cases are drawn and sent.

One audit of one operation: `audit(operation, base_url, headers, explicit=..., negative=...)` sends the explicit
cases (the success paths), generated valid and (with `negative`) invalid ones, and the coverage phase's boundary
values; the findings hold each distinct failure with the first request that caused it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from schemathesis.core.failures import Failure, FailureGroup

POSITIVE_EXAMPLES = 30  # per operation; with the negative ones an operation takes a second or two on 2 cores
NEGATIVE_EXAMPLES = 20
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
]


@dataclass
class Findings:
    """What one operation's audit saw: status codes, and each distinct failure with a request that caused it."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    def record(self, case: Any, response: Any, error: BaseException) -> None:
        """Keep the first request per (schemathesis failure codes, status): the same bug is reported once."""
        lines = str(error).strip().splitlines()
        codes = sorted({line.strip() for line in lines if line.strip().startswith("- ST")}) or lines[:1]
        key = f"{' '.join(codes)} | {response.status_code}"
        detail = "\n".join(lines[:16])
        self.failures.setdefault(key, f"{detail}\n  request: {case.as_curl_command()}\n  answer: {response.text[:300]}")

    def report(self, label: str) -> str:
        return f"{label}: {len(self.failures)} distinct failures\n\n" + "\n\n".join(self.failures.values())


def _draw(operation: Any, mode: GenerationMode, examples: int, explicit: list[dict[str, Any]], send: Callable,
          media: dict[str, str]) -> None:  # fmt: skip
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a finding is reproducible, CI is not flaky
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=operation.as_strategy(generation_mode=mode, **media))
    def draw(case: Any) -> None:
        send(case)

    for kwargs in explicit:
        draw = example(case=operation.Case(**kwargs))(draw)
    draw()


def _coverage(operation: Any, negative: bool) -> Iterator[Any]:
    """Schemathesis' coverage phase: boundary and just-outside values of every input, deterministic. Its cases
    of other methods (405 probes of operations the project does not use) and other media types are left out."""
    schema = operation.schema
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if negative else [GenerationMode.POSITIVE]
    config = schema.config.generation_for(operation=operation, phase="coverage")
    for case in schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=config):
        if case.method.upper() == operation.method.upper() and case.media_type in (None, "application/json"):
            yield case


def audit(
    operation: Any,
    base_url: str,
    headers: dict[str, str],
    *,
    explicit: list[dict[str, Any]],
    negative: bool = True,
    media: dict[str, str] | None = None,
) -> Findings:
    """Every case of `operation` sent over HTTP and checked against the spec; what was found."""
    findings = Findings()

    def send(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        findings.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as error:
            findings.record(case, response, error)

    _draw(operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, explicit, send, media or {})
    if negative:
        _draw(operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, [], send, media or {})
    for case in _coverage(operation, negative):
        send(case)
    return findings
