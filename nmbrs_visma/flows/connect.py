"""Connect an account interactively: `nmbrs-visma connect visma|nmbrs [--account NAME]`.

The authorization code flow with PKCE (S256), a fresh `state`, `prompt=login` (a fresh login, so nobody has
to log out of another company first) and `offline_access` (a refresh token). A tiny HTTP listener on the
loopback redirect URI (RFC 8252) receives the browser's redirect; the auth classes of the client modules
(authlib underneath) check the state and exchange the code; the new token pair is saved to the account
block at once, under the account's token lock. Then the chosen company is shown: for Visma.net the tenant
the token is for and its branches, for Nmbrs the debtors the consent covers.

A Visma.net service account (client credentials) needs no login: `connect` fetches a token to prove the
client id, secret and tenant work.

The redirect URI: `http://127.0.0.1:PORT/...`, `http://localhost:PORT/...` (both bound on 127.0.0.1) or
`http://[::1]:PORT/...` (bound on the IPv6 loopback). Port 0 means "any free port": the listener takes one and
the redirect URI sent is the one with that real port. That suits Visma Connect, which accepts any port on a
loopback redirect (RFC 8252 7.3). Nmbrs' identity server matches the registered redirect URI exactly, so there
port 0 is refused before a browser opens (a free port could never match): register one fixed port and use it.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from prefect import flow

from nmbrs_visma.blocks.locks import token_lock
from nmbrs_visma.blocks.nmbrs import NmbrsAccount
from nmbrs_visma.blocks.oauth import OAuthAccount
from nmbrs_visma.blocks.visma_net import VismaNetAccount
from nmbrs_visma.clients.errors import ApiError
from nmbrs_visma.tasks.tokens import ACCOUNT_TYPES, AccountNotAuthorised, ensure_fresh_token, load_account

System = Literal["visma", "nmbrs"]
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_EXACT_REDIRECT: frozenset[str] = frozenset({"nmbrs"})  # identity servers that match the redirect URI exactly
_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>nmbrs-visma</title></head><body>"
    "<h1>{title}</h1><p>{text}</p></body></html>"
)


class ConnectError(Exception):
    """The interactive authorisation did not complete; the text says why (never a code or token)."""


# -- the loopback listener ------------------------------------------------------------------------------------


class _IPv6Server(HTTPServer):
    address_family = socket.AF_INET6


def _netloc(host: str, port: int) -> str:
    """`host:port`, an IPv6 address in brackets (RFC 3986)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class LoopbackListener:
    """Receives the one redirect to `path` on `host`:`port` (127.0.0.1 or ::1; port 0: any free one, the real
    port then in `port`); `callback_url` is the full URL it was called at."""

    host: str
    port: int
    path: str
    callback_url: str | None = None
    _received: threading.Event = field(default_factory=threading.Event)
    _server: HTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> LoopbackListener:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != listener.path or listener._received.is_set():
                    self.send_error(404)
                    return
                query = parse_qs(parts.query)
                failed = "error" in query or "code" not in query
                page = _PAGE.format(
                    title="Not connected" if failed else "Connected",
                    text="The authorisation was refused; see the terminal."
                    if failed
                    else "You can close this window and return to the terminal.",
                )
                body = page.encode()
                self.send_response(400 if failed else 200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
                listener.callback_url = f"http://{_netloc(listener.host, listener.port)}{self.path}"
                listener._received.set()

            def log_message(self, format: str, *args: Any) -> None:  # the query holds the code: never log it
                return

        server_type = _IPv6Server if ":" in self.host else HTTPServer
        try:
            self._server = server_type((self.host, self.port), Handler)
        except OSError as exc:
            raise ConnectError(
                f"cannot listen on {_netloc(self.host, self.port)} for the redirect ({exc.strerror}); "
                "free the port or pass --port (and register that redirect URI)"
            ) from None
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="connect-listener", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float) -> str:
        if not self._received.wait(timeout) or self.callback_url is None:
            where = f"http://{_netloc(self.host, self.port)}{self.path}"
            raise ConnectError(f"no redirect arrived at {where} in {timeout:.0f}s")
        return self.callback_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


@contextmanager
def listening(redirect_uri: str) -> Iterator[LoopbackListener]:
    """A listener on the redirect URI's loopback address and port (0: any free port; none given: 80)."""
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK_HOSTS:
        raise ConnectError(
            f"the redirect URI {redirect_uri} is not a loopback http URI "
            "(http://127.0.0.1:PORT/..., http://localhost:PORT/... or http://[::1]:PORT/...)"
        )
    host = "::1" if parts.hostname == "::1" else "127.0.0.1"
    port = _port(redirect_uri)
    listener = LoopbackListener(host=host, port=80 if port is None else port, path=parts.path or "/").start()
    try:
        yield listener
    finally:
        listener.stop()


def _port(redirect_uri: str) -> int | None:
    try:
        return urlsplit(redirect_uri).port
    except ValueError:
        raise ConnectError(f"the redirect URI {redirect_uri} has no valid port") from None


def with_port(redirect_uri: str, port: int | None) -> str:
    """The redirect URI on another loopback port (RFC 8252 lets a native app choose its port)."""
    if port is None:
        return redirect_uri
    parts = urlsplit(redirect_uri)
    netloc = _netloc(parts.hostname or "127.0.0.1", port)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- saving the new grant ------------------------------------------------------------------------------------


def _token_tenant(token: dict[str, Any]) -> str | None:
    """The tenant a Visma Connect token is for: the answer's `tenant_id`, else the access token's JWT claim."""
    if token.get("tenant_id"):
        return str(token["tenant_id"])
    parts = str(token.get("access_token", "")).split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    tenant = claims.get("tenant_id") if isinstance(claims, dict) else None
    return str(tenant) if tenant else None


def _grant_saver(account_type: type[OAuthAccount], account: str) -> Callable[[dict[str, Any]], None]:
    """`on_token` for the code exchange: the new grant replaces the old one, under the account's token lock."""

    def save(token: dict[str, Any]) -> None:
        with token_lock(account_type, account):
            block = account_type.load(account, _sync=True)
            block.forget_tokens()
            block.apply_token(token)
            tenant = _token_tenant(token)
            if isinstance(block, VismaNetAccount) and tenant:
                block.tenant_id = tenant
            block.save(account, overwrite=True, _sync=True)

    return save


# -- the flow ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectResult:
    """What was connected: the account and the company (tenant) or debtors its token covers."""

    system: str
    account: str
    company: list[str]


def _show_company(block: OAuthAccount) -> list[str]:
    try:
        if isinstance(block, VismaNetAccount):
            with block.get_client() as client:
                branches = client.branches()
            tenant = block.tenant_id or "(not named in the token; set tenant_id on the block to choose one)"
            return [f"Visma.net company (tenant) {tenant}", f"branches: {', '.join(branches) or '-'}"]
        assert isinstance(block, NmbrsAccount)
        with block.get_client() as client:
            debtors = client.debtors()
        return [f"Nmbrs debtor {debtor.number} {debtor.name}" for debtor in debtors] or ["no debtors in the consent"]
    except ApiError as exc:
        return [f"connected, but reading the company failed: {exc}"]


def authorise_account(
    system: System,
    account: str = "default",
    *,
    port: int | None = None,
    open_url: Callable[[str], object] | None = webbrowser.open,
    show_url: Callable[[str], object] = print,
    timeout: float = 300.0,
) -> ConnectResult:
    """Run the interactive authorisation for an account block and save the new tokens to it.

    `open_url` opens the authorize URL (a browser; tests pass an HTTP client that follows the emulator's
    redirect); `show_url` prints it for a person to open by hand.
    """
    account_type = ACCOUNT_TYPES[system]
    block = load_account(account_type, account)
    if isinstance(block, VismaNetAccount) and not block.uses_refresh_token:
        block, _ = ensure_fresh_token(VismaNetAccount, account)
        lines = ["service account (client credentials): no login needed, its token works", *_show_company(block)]
        return ConnectResult(system, account, lines)

    redirect_uri = with_port(block.redirect_uri, port)
    if system in _EXACT_REDIRECT and _port(redirect_uri) == 0:
        raise ConnectError(
            f"{block.system_name} account '{account}': port 0 (any free port) cannot be used, the "
            f"{block.system_name} identity server accepts only the exact registered redirect URI: give the port "
            f"registered with the app (--port, or in the block's redirect URI {block.redirect_uri})"
        )
    with listening(redirect_uri) as listener:
        redirect_uri = with_port(redirect_uri, listener.port)  # port 0 asked for a free one
        block.redirect_uri = redirect_uri
        auth = block.get_auth(guarded=False, on_token=_grant_saver(account_type, account))
        try:
            request = auth.authorization_request()
            show_url(request.url)
            if open_url is not None:
                with suppress(Exception):  # no browser here: the printed URL is enough
                    open_url(request.url)
            callback = listener.wait(timeout)
            try:
                auth.complete_authorization(callback, request)
            except ApiError as exc:
                raise ConnectError(f"{block.system_name} account '{account}': {exc.message}") from None
        finally:
            auth.close()
    return ConnectResult(system, account, _show_company(account_type.load(account, _sync=True)))


@flow(name="connect-account", log_prints=True)
def connect_account(system: System, account: str = "default", port: int | None = None) -> list[str]:
    """Interactive authorisation of an account (prints the URL to open); returns the connected company."""
    result = authorise_account(system, account, port=port, open_url=None)
    return result.company


def run_connect(*, system: str, account: str, port: int | None) -> int:
    """`nmbrs-visma connect`: 0 when connected, 1 when not (the reason printed, never a traceback)."""
    from rich.console import Console

    from nmbrs_visma.output import fail

    console = Console()
    if system not in ACCOUNT_TYPES:
        return fail(f"unknown system {system!r}: choose visma or nmbrs")

    def show(url: str) -> None:
        console.print("Open this URL to log in (a fresh login is asked for; the browser opens it if it can):")
        console.print(url, markup=False, highlight=False, soft_wrap=True)

    try:
        result = authorise_account(system, account, port=port, show_url=show)  # type: ignore[arg-type]
    except (ConnectError, AccountNotAuthorised, ApiError) as exc:
        console.print(f"[red]Not connected[/]: {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        console.print("[red]Not connected[/]: interrupted")
        return 1
    console.print(f"[green]Connected[/] {ACCOUNT_TYPES[system].system_name} account '{account}':", highlight=False)
    for line in result.company:
        console.print(f"  {line}", highlight=False, markup=False)
    return 0
