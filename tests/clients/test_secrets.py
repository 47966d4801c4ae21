"""No client secret, access token, refresh token, code or PKCE verifier in logs, exception text or reprs."""

from __future__ import annotations

import logging

import httpx2
import pytest

from nmbrs_visma.clients.errors import ApiError
from nmbrs_visma.sandbox.visma_net import (
    INTERACTIVE_CLIENT_SECRET,
    SERVICE_CLIENT_SECRET,
)
from tests.support import Sandbox, dumps, journal


def test_no_secret_in_logs_errors_or_reprs(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root: httpx2, httpcore, authlib and ours
    for name in ("httpx2", "httpx", "httpcore", "httpcore2", "authlib", "nmbrs_visma"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    texts: list[str] = []
    sandbox.world.refresh_grace_period = 0.0
    tokens: list[dict] = []

    auth = sandbox.interactive_auth(on_token=tokens.append)
    request = auth.authorization_request()
    logging.disable(logging.CRITICAL)  # this GET plays the user's browser, which is not part of the product
    try:
        callback = httpx2.get(request.url, follow_redirects=False).headers["location"]
    finally:
        logging.disable(logging.NOTSET)
    code = httpx2.URL(callback).params["code"]
    auth.complete_authorization(callback, request)
    first_refresh = tokens[0]["refresh_token"]
    auth.renew()
    texts += [repr(auth), repr(request), str(request)]

    with sandbox.client(auth) as client:
        texts.append(repr(client))
        client.reference()
        for body in (journal("202501"), journal(lines=[("8888", "1", "0", []), ("1700", "0", "1", [])])):
            with pytest.raises(ApiError) as info:
                client.create_journal_transaction(dumps(body))
            texts += [str(info.value), repr(info.value)]

    stale = sandbox.interactive_auth(token={"access_token": "x", "refresh_token": first_refresh, "expires_at": 1})
    with pytest.raises(ApiError) as info:
        stale.renew()
    texts += [str(info.value), repr(info.value), repr(info.value.__cause__), repr(info.value.__context__)]

    wrong = sandbox.service_auth()
    wrong._oauth.client_secret = "wrong-" + SERVICE_CLIENT_SECRET  # a refused secret must not leak either
    with pytest.raises(ApiError) as info:
        wrong.access_token()
    texts += [str(info.value), repr(info.value)]

    secrets = {INTERACTIVE_CLIENT_SECRET, SERVICE_CLIENT_SECRET, code, request.code_verifier.get_secret_value()}
    for token in tokens:
        secrets |= {token["access_token"], token["refresh_token"]}
    assert len(secrets) >= 7
    logged = caplog.text + "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert caplog.records, "the test must actually capture log output"
    for secret in secrets:
        assert secret not in logged
        for text in texts:
            assert secret not in text
