"""Run both emulators (Visma.net ERP + Visma Connect, Nmbrs REST + identity) seeded with the demo world."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nmbrs_visma.sandbox.server import RunningServer, start_server

if TYPE_CHECKING:
    from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
    from nmbrs_visma.sandbox.visma_net import VismaWorld


@dataclass
class Sandboxes:
    """Both emulators, running; their worlds are live objects a test or the demo may inspect or tune."""

    visma: RunningServer
    nmbrs: RunningServer
    visma_world: VismaWorld
    nmbrs_world: NmbrsWorld

    @property
    def visma_url(self) -> str:
        return self.visma.url

    @property
    def nmbrs_url(self) -> str:
        return self.nmbrs.url

    def stop(self) -> None:
        self.visma.stop()
        self.nmbrs.stop()


def start_sandboxes(*, host: str = "127.0.0.1", visma_port: int = 0, nmbrs_port: int = 0) -> Sandboxes:
    """Start both emulators with the demo world on loopback ports (0: a free port each)."""
    from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
    from nmbrs_visma.sandbox.nmbrs import create_app as create_nmbrs_app
    from nmbrs_visma.sandbox.visma_net import VismaWorld
    from nmbrs_visma.sandbox.visma_net import create_app as create_visma_app

    visma_world = VismaWorld()
    visma_world.seed_demo()
    nmbrs_world = NmbrsWorld()
    nmbrs_world.seed_demo()
    visma = start_server(create_visma_app(visma_world), host=host, port=visma_port)
    try:
        nmbrs = start_server(create_nmbrs_app(nmbrs_world), host=host, port=nmbrs_port)
    except BaseException:
        visma.stop()
        raise
    return Sandboxes(visma=visma, nmbrs=nmbrs, visma_world=visma_world, nmbrs_world=nmbrs_world)


@contextmanager
def running_sandboxes(*, host: str = "127.0.0.1", visma_port: int = 0, nmbrs_port: int = 0) -> Iterator[Sandboxes]:
    sandboxes = start_sandboxes(host=host, visma_port=visma_port, nmbrs_port=nmbrs_port)
    try:
        yield sandboxes
    finally:
        sandboxes.stop()


def serve_forever(*, visma_port: int, nmbrs_port: int, host: str = "127.0.0.1") -> None:
    """`nmbrs-visma sandbox`: serve both emulators until interrupted, printing where they listen."""
    from rich.console import Console

    console = Console()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running_sandboxes(host=host, visma_port=visma_port, nmbrs_port=nmbrs_port) as sandboxes:
        console.print(f"Visma.net ERP + Visma Connect emulator: [bold]{sandboxes.visma_url}[/]")
        console.print(f"Nmbrs REST + identity emulator:        [bold]{sandboxes.nmbrs_url}[/]")
        console.print("Seeded with the demo world (nmbrs_visma/sandbox/demo_data.py). Ctrl-C stops.")
        with suppress(KeyboardInterrupt):
            stop.wait()
    console.print("Sandboxes stopped.")
