"""A test control of both emulators: error bodies that echo every credential the request carried.

Why: a real API may quote a request back in its error text (a gateway that repeats the subscription key, an
identity server that names the refresh token it refused). The clients must keep every secret out of what they
build from such a body; the secret-leak test turns this on (`NmbrsWorld.echo_secrets`,
`VismaWorld.faults.echo_secrets`) and checks that no secret reaches an exception, a log line, a status row or
an artifact. Off by default: the emulators then answer exactly as the published specs show.

`EchoSecrets` is plain ASGI: it reads the request's credentials (the `Authorization` header, decoded when it is
Basic, `X-Subscription-Key`, and the OAuth form fields), and on an answer of 400 or more with a JSON object body
appends them to the first of the body's message fields, so the clients' own parsers carry them into their text.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECRET_FIELDS = ("client_secret", "refresh_token", "code", "code_verifier", "client_assertion", "access_token")
_HEADERS = (b"authorization", b"x-subscription-key", b"cookie")


def received_secrets(headers: list[tuple[bytes, bytes]], body: bytes) -> list[str]:
    """`name=value` for every credential in the request: credential headers (a Basic one decoded as well) and
    the secret fields of a form body."""
    found: list[str] = []
    for name, value in headers:
        if name.lower() not in _HEADERS:
            continue
        text = value.decode("latin-1")
        found.append(f"{name.decode('latin-1')}={text}")
        scheme, _, credentials = text.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials).decode("latin-1").partition(":")
            except (binascii.Error, ValueError):
                continue
            found.append(f"basic client_id={unquote(user)} client_secret={unquote(password)}")
    form = parse_qs(body.decode("latin-1"), keep_blank_values=False) if body else {}
    found += [f"{name}={value}" for name in SECRET_FIELDS for value in form.get(name, [])]
    return found


class EchoSecrets:
    """ASGI middleware: when `enabled()`, error bodies (JSON objects, status >= 400) echo the request's
    credentials in the first of `fields` they hold (or in the first of `fields`, added)."""

    def __init__(self, app: ASGIApp, enabled: Callable[[], bool], fields: tuple[str, ...]) -> None:
        self.app, self.enabled, self.fields = app, enabled, fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled():
            await self.app(scope, receive, send)
            return
        request_body = bytearray()

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request_body.extend(message.get("body", b""))
            return message

        start: dict[str, Any] = {}
        held = bytearray()

        async def echoing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                    return
                start.update(message)
                return
            if message["type"] != "http.response.body" or not start:
                await send(message)
                return
            held.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = self._echoed(bytes(held), received_secrets(list(scope.get("headers", [])), bytes(request_body)))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode("ascii")))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, recording_receive, echoing_send)

    def _echoed(self, body: bytes, secrets: list[str]) -> bytes:
        try:
            content = json.loads(body)
        except ValueError:
            return body
        if not isinstance(content, dict) or not secrets:
            return body
        field = next((name for name in self.fields if isinstance(content.get(name), str)), self.fields[0])
        content[field] = f"{content.get(field) or ''} (received: {'; '.join(secrets)})".strip()
        return json.dumps(content).encode()
