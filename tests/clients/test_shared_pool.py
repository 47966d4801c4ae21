"""The process's connection pool (`clients.http.shared_transport`) against a real HTTP server: clients and token
requests of different accounts of one service reuse kept-alive connections instead of each opening its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nmbrs_visma.clients.http import shared_transport
from nmbrs_visma.clients.visma_net import VismaNetClient
from nmbrs_visma.sandbox import visma_net as visma_sandbox
from nmbrs_visma.sandbox.server import RunningServer, start_server
from tests.support import VISMA_FAST, service_auth


@pytest.fixture
def counted_server() -> Iterator[tuple[RunningServer, visma_sandbox.VismaWorld, set[Any]]]:
    """The Visma.net emulator behind an ASGI wrapper that notes each request's peer (host, port): one peer per
    TCP connection the clients opened."""
    world = visma_sandbox.VismaWorld().seed_demo()
    app = visma_sandbox.create_app(world)
    peers: set[Any] = set()

    async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            peers.add(tuple(scope["client"]))
        await app(scope, receive, send)

    server = start_server(counted)
    try:
        yield server, world, peers
    finally:
        server.stop()


def test_clients_of_different_accounts_reuse_one_connection(counted_server) -> None:
    server, world, peers = counted_server
    tenants = sorted(world.tenants)[:2]
    assert len(tenants) == 2
    for _ in range(3):
        for tenant in tenants:  # a client and its auth per account, each closed after use, as a run does
            with VismaNetClient(base_url=server.url, auth=service_auth(server.url, tenant), policy=VISMA_FAST) as c:
                assert c.financial_periods()
    # six token requests and six reads, one after another: one connection (each client's own pool opened 12)
    assert len(peers) == 1


def test_a_proxy_in_the_environment_keeps_each_client_on_httpx2s_own_proxy_rules(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert shared_transport() is None  # a shared transport would bypass the proxy
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("https_proxy", raising=False)
    assert shared_transport() is not None
