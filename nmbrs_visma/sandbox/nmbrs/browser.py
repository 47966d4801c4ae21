"""What the user's browser does in the emulator's connect flow: open the authorize URL, follow nothing, and
return the callback URL the identity server redirects to (it approves the demo user at once)."""

from __future__ import annotations

import httpx2


def approve_authorization(authorization_url: str, *, timeout: float = 10.0) -> str:
    """The redirect (callback URL with `code` and `state`) the emulator answers to `authorization_url`."""
    response = httpx2.get(authorization_url, follow_redirects=False, timeout=timeout)
    if response.status_code not in (302, 303) or "location" not in response.headers:
        raise RuntimeError(f"the Nmbrs emulator did not approve the authorisation: HTTP {response.status_code}")
    return response.headers["location"]
