"""Local emulator of the Nmbrs REST API and its identity server (FastAPI), seeded with the demo world."""

from nmbrs_visma.sandbox.nmbrs.app import create_app
from nmbrs_visma.sandbox.nmbrs.browser import approve_authorization
from nmbrs_visma.sandbox.nmbrs.ledger import JOURNAL_KINDS, JournalKind, LineKey
from nmbrs_visma.sandbox.nmbrs.world import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REDIRECT_URI,
    DEMO_SUBSCRIPTION_KEY,
    NmbrsWorld,
    RunRecord,
    company_id_for,
    demo_world,
    display_period,
    expected_lines,
    run_id_for,
)

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_REDIRECT_URI",
    "DEMO_SUBSCRIPTION_KEY",
    "JOURNAL_KINDS",
    "JournalKind",
    "LineKey",
    "NmbrsWorld",
    "RunRecord",
    "approve_authorization",
    "company_id_for",
    "create_app",
    "demo_world",
    "display_period",
    "expected_lines",
    "run_id_for",
]
