"""Serve an ASGI app with uvicorn on a loopback port, in a background thread, for the sandboxes and tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn


@dataclass
class RunningServer:
    """A uvicorn server running in a daemon thread; `url` has no trailing slash."""

    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_server(app: object, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 15.0) -> RunningServer:
    """Start `app` on host:port (port 0 picks a free one) and wait until it accepts connections."""
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"sandbox server on {host}:{port} did not start")
        time.sleep(0.02)
    return RunningServer(server=server, thread=thread, host=host, port=port)


@contextmanager
def serving(app: object, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
    running = start_server(app, host=host, port=port)
    try:
        yield running
    finally:
        running.stop()
