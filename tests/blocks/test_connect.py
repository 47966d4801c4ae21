"""`nmbrs-visma connect` end to end against the emulators: the authorize URL (PKCE S256, state, prompt=login,
offline_access) is followed like a browser would, into the loopback listener; the code is exchanged and the
tokens saved to the block; the chosen company is shown."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from nmbrs_visma.blocks import NmbrsAccount, VismaNetAccount
from nmbrs_visma.config import apply_config
from nmbrs_visma.flows.connect import ConnectError, authorise_account, listening, run_connect, with_port
from nmbrs_visma.sandbox.server import free_port
from nmbrs_visma.tasks.tokens import ensure_fresh_token
from tests.blocks.conftest import ENV, sandbox_config


class Browser:
    """Opens the authorize URL and follows the emulator's redirect into the loopback listener."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.landed: httpx2.Response | None = None

    def __call__(self, url: str) -> None:
        self.opened.append(url)
        self.landed = httpx2.get(url, follow_redirects=True, timeout=10)


@pytest.fixture
def redirect_uri(sandboxes) -> str:
    """A loopback redirect URI on a free port, registered with both emulators' demo clients."""
    uri = f"http://127.0.0.1:{free_port()}/callback"
    sandboxes.nmbrs_world.redirect_uris.add(uri)
    return uri


@pytest.fixture
def configured(clean_blocks: None, sandboxes, redirect_uri: str) -> None:
    apply_config(sandbox_config(sandboxes.visma_url, sandboxes.nmbrs_url, redirect_uri=redirect_uri), ENV)


def test_connect_nmbrs_saves_tokens_and_shows_the_debtors(configured: None, redirect_uri: str) -> None:
    browser = Browser()
    result = authorise_account("nmbrs", "default", open_url=browser, show_url=lambda url: None, timeout=30)

    (url,) = browser.opened
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["prompt"] == ["login"] and query["state"][0]
    assert "offline_access" in query["scope"][0].split()
    assert query["redirect_uri"] == [redirect_uri]
    assert browser.landed is not None and browser.landed.status_code == 200
    assert "code=" not in browser.landed.text  # the page shown in the browser echoes nothing

    saved = NmbrsAccount.load("default")
    assert saved.access_token is not None and saved.refresh_token is not None
    assert saved.refresh_token_issued_at is not None
    assert any("Bakkerij Groep" in line for line in result.company)
    assert not ensure_fresh_token(NmbrsAccount, "default")[1]  # the saved token is good for the run


def test_connect_visma_interactive_saves_tokens_and_shows_the_company(configured: None) -> None:
    browser = Browser()
    block = VismaNetAccount.load("interactive")
    block.tenant_id = "1000002"
    block.save("interactive", overwrite=True)

    result = authorise_account("visma", "interactive", open_url=browser, show_url=lambda url: None, timeout=30)

    query = parse_qs(urlsplit(browser.opened[0]).query)
    assert query["prompt"] == ["login"] and query["code_challenge_method"] == ["S256"]
    assert query["acr_values"] == ["tenant:1000002"]
    assert "offline_access" in query["scope"][0].split()
    saved = VismaNetAccount.load("interactive")
    assert saved.refresh_token is not None and saved.access_token_valid()
    assert result.company[0] == "Visma.net company (tenant) 1000002"
    assert result.company[1] == "branches: 1, 2"  # tenant 1000002 has branches 1 and 2


def test_a_state_mismatch_is_refused(configured: None, redirect_uri: str) -> None:
    def forged_browser(url: str) -> None:  # an attacker's redirect with its own code and state
        httpx2.get(f"{redirect_uri}?code=forged&state=forged", timeout=10)

    with pytest.raises(ConnectError, match="state"):
        authorise_account("nmbrs", "default", open_url=forged_browser, show_url=lambda url: None, timeout=30)
    assert NmbrsAccount.load("default").refresh_token is None


def test_a_service_account_needs_no_login(configured: None) -> None:
    result = authorise_account("visma", "service", open_url=None, show_url=lambda url: None)
    assert "no login needed" in result.company[0]
    assert result.company[-1].startswith("branches: ")  # its token was fetched and read the tenant's branches
    assert VismaNetAccount.load("service").access_token is None  # and kept in memory only: nothing rotates


def test_the_command_reports_a_missing_account_without_a_traceback(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_connect(system="nmbrs", account="nowhere", port=None) == 1
    out = capsys.readouterr().out
    assert "Not connected" in out and "nowhere" in out and "Traceback" not in out


def test_a_visma_client_renewing_mid_run_adopts_the_pair_another_run_saved(configured: None, sandboxes) -> None:
    import datetime as dt

    authorise_account("visma", "interactive", open_url=Browser(), show_url=lambda url: None, timeout=30)
    running = VismaNetAccount.load("interactive").get_client()  # a long run's client, holding the current pair
    try:
        block = VismaNetAccount.load("interactive")
        block.access_token_expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        block.save("interactive", overwrite=True)
        assert ensure_fresh_token(VismaNetAccount, "interactive")[1]  # another run rotates the pair
        asked = len(sandboxes.visma_world.token_requests)
        running.auth.renew()  # takes the lock, re-reads the block, adopts instead of spending the old token
        assert len(sandboxes.visma_world.token_requests) == asked
        saved = VismaNetAccount.load("interactive").access_token
        assert saved is not None and running.auth.access_token().get_secret_value() == saved.get_secret_value()
        assert running.branches()
    finally:
        running.close()


# -- the redirect listener: IPv6 loopback and port 0 ------------------------------------------------------------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")


def redirect_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["redirect_uri"][0]


def test_redirect_uris_keep_their_brackets_and_port_0_is_not_port_80() -> None:
    assert with_port("http://[::1]:8765/callback", 9001) == "http://[::1]:9001/callback"
    assert with_port("http://127.0.0.1:8765/callback", 9001) == "http://127.0.0.1:9001/callback"
    with listening("http://127.0.0.1:0/callback") as listener:
        assert listener.host == "127.0.0.1" and listener.port not in (0, 80)
        httpx2.get(f"http://127.0.0.1:{listener.port}/callback?code=c&state=s", timeout=10)
        assert listener.wait(5) == f"http://127.0.0.1:{listener.port}/callback?code=c&state=s"
    with pytest.raises(ConnectError, match="not a loopback"), listening("http://192.0.2.1:8765/callback"):
        pass


@needs_ipv6
def test_an_ipv6_redirect_is_bound_on_the_ipv6_loopback() -> None:
    with listening("http://[::1]:0/callback") as listener:
        assert listener.host == "::1" and listener.port != 0
        with socket.create_connection(("::1", listener.port), timeout=5):
            pass  # it listens on ::1
        httpx2.get(f"http://[::1]:{listener.port}/callback?code=c&state=s", timeout=10)
        assert listener.wait(5) == f"http://[::1]:{listener.port}/callback?code=c&state=s"


@needs_ipv6
def test_connect_nmbrs_on_an_ipv6_redirect_uri(clean_blocks: None, sandboxes) -> None:
    uri = f"http://[::1]:{free_port()}/callback"
    sandboxes.nmbrs_world.redirect_uris.add(uri)  # registered exactly, as Nmbrs wants it
    apply_config(sandbox_config(sandboxes.visma_url, sandboxes.nmbrs_url, redirect_uri=uri), ENV)
    browser = Browser()

    result = authorise_account("nmbrs", "default", open_url=browser, show_url=lambda url: None, timeout=30)

    assert redirect_of(browser.opened[0]) == uri
    assert browser.landed is not None and browser.landed.status_code == 200
    assert NmbrsAccount.load("default").refresh_token is not None
    assert any("Bakkerij Groep" in line for line in result.company)


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("[::1]", marks=needs_ipv6)])
def test_port_0_takes_a_free_port_and_sends_it_in_the_redirect_uri(configured: None, host: str) -> None:
    block = VismaNetAccount.load("interactive")
    block.redirect_uri = f"http://{host}:0/callback"
    block.save("interactive", overwrite=True)
    browser = Browser()

    authorise_account("visma", "interactive", open_url=browser, show_url=lambda url: None, timeout=30)

    sent = redirect_of(browser.opened[0])
    assert sent.startswith(f"http://{host}:") and sent.endswith("/callback")
    assert urlsplit(sent).port not in (None, 0, 80)
    assert browser.landed is not None and browser.landed.status_code == 200  # the listener got the redirect
    saved = VismaNetAccount.load("interactive")
    assert saved.refresh_token is not None and saved.access_token_valid()


def test_port_0_is_refused_where_the_redirect_must_match_exactly(configured: None) -> None:
    browser = Browser()
    with pytest.raises(ConnectError, match="exact registered redirect URI"):
        authorise_account("nmbrs", "default", port=0, open_url=browser, show_url=browser, timeout=30)
    assert browser.opened == []  # refused before any browser opened
    assert NmbrsAccount.load("default").refresh_token is None
