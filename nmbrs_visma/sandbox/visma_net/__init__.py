"""Emulator of Visma.net ERP (the journal-transaction paths this project uses) and Visma Connect.

`create_app(world)` gives the FastAPI app; `VismaWorld().seed_demo()` the demo tenants and clients. Serve it
with `nmbrs_visma.sandbox.server.start_server`; token URL `{url}/connect/token`, API base `{url}`.
"""

from nmbrs_visma.sandbox.visma_net.api import create_app
from nmbrs_visma.sandbox.visma_net.world import (
    DEMO_REDIRECT_URI,
    DEMO_USER,
    INTERACTIVE_CLIENT_ID,
    INTERACTIVE_CLIENT_SECRET,
    INTERACTIVE_SCOPES,
    LEDGERS,
    SERVICE_CLIENT_ID,
    SERVICE_CLIENT_SECRET,
    SERVICE_SCOPES,
    Faults,
    OAuthClient,
    PeriodRecord,
    StoredLine,
    StoredTransaction,
    VismaWorld,
)

__all__ = [
    "DEMO_REDIRECT_URI",
    "DEMO_USER",
    "INTERACTIVE_CLIENT_ID",
    "INTERACTIVE_CLIENT_SECRET",
    "INTERACTIVE_SCOPES",
    "LEDGERS",
    "SERVICE_CLIENT_ID",
    "SERVICE_CLIENT_SECRET",
    "SERVICE_SCOPES",
    "Faults",
    "OAuthClient",
    "PeriodRecord",
    "StoredLine",
    "StoredTransaction",
    "VismaWorld",
    "create_app",
]
