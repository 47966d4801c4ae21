"""The e2e bench's emulators in a process of their own, as the real services are: remote, with their own CPU.

Why processes: served from the benchmark's own process, the emulators share its interpreter lock with the
contender being measured, and the pipeline (which makes more requests: reads, look-ups) would pay for the
emulator's work as well as its own; and each service has its own, so serving Nmbrs documents does not hold
up Visma.net's answers. The parent drives each child over a pipe: start the Nmbrs world, start a fresh
Visma.net world (same port each time, so the saved account blocks keep pointing at it), read what the
Visma.net emulator received, stop.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


@dataclass(frozen=True)
class LedgerStats:
    """What a Visma.net world received and holds, for the bench's checks and its request count."""

    requests: Counter[str]
    tokens: int
    booked: int


def count_requests(world: Any) -> Counter[str]:
    """The emulator's request log by kind."""
    kinds: Counter[str] = Counter()
    for request in world.received:
        if request.path == "/v2/journaltransaction":
            kinds["create" if request.method == "POST" else "look-up"] += 1
        elif request.path.startswith("/v1/"):
            kinds["read " + request.path.split("/")[2]] += 1
        else:
            kinds[f"{request.method} {request.path}"] += 1
    return kinds


def _serve(pipe: Connection) -> None:
    """A child: one emulator, answering the parent's commands until told to stop."""
    import e2e_world

    from nmbrs_visma.sandbox.nmbrs import create_app as create_nmbrs_app
    from nmbrs_visma.sandbox.server import start_server
    from nmbrs_visma.sandbox.visma_net import create_app as create_visma_app

    server: Any = None
    visma_world: Any = None
    port = 0
    while True:
        command, arguments = pipe.recv()
        if command == "nmbrs":
            server = start_server(create_nmbrs_app(e2e_world.nmbrs_world(arguments["admins"])))
            pipe.send(server.url)
        elif command == "visma":
            if server is not None:
                server.stop()
            visma_world = e2e_world.visma_world(**arguments)
            server = start_server(create_visma_app(visma_world), port=port)
            port = server.port
            pipe.send(server.url)
        elif command == "stats":
            booked = sum(len(visma_world.transactions(tenant)) for tenant in visma_world.tenants)
            pipe.send(LedgerStats(count_requests(visma_world), len(visma_world.token_requests), booked))
        elif command == "stop":
            if server is not None:
                server.stop()
            pipe.send(None)
            return


class _Child:
    """One emulator's process and the pipe to it."""

    def __init__(self, name: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), name=name, daemon=True)
        self.process.start()

    def ask(self, command: str, **arguments: Any) -> Any:
        self.pipe.send((command, arguments))
        return self.pipe.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            self.ask("stop")
            self.process.join(10)


class Emulators:
    """The parent's handle on the two emulator processes (each service its own, as the real ones are apart:
    in one process, the Nmbrs emulator's work held up the Visma.net emulator's answers)."""

    def __init__(self) -> None:
        self._nmbrs = _Child("e2e-nmbrs-emulator")
        self._visma = _Child("e2e-visma-emulator")

    @property
    def pids(self) -> set[int]:
        return {int(child.process.pid or 0) for child in (self._nmbrs, self._visma)}

    def start_nmbrs(self, admins: int) -> str:
        return str(self._nmbrs.ask("nmbrs", admins=admins))

    def fresh_visma(self, admins: int, **faults: Any) -> str:
        """A new Visma.net world (latency, rate budget) on the same port as the last one."""
        return str(self._visma.ask("visma", admins=admins, **faults))

    def stats(self) -> LedgerStats:
        stats: LedgerStats = self._visma.ask("stats")
        return stats

    def stop(self) -> None:
        for child in (self._nmbrs, self._visma):
            child.stop()
