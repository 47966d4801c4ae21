"""Run both emulators (Visma.net ERP + Visma Connect, Nmbrs REST + identity) seeded with the demo world.

`nmbrs-visma sandbox` serves them until Ctrl-C; a port already taken is one line naming the port and the option
that changes it (exit 2), and `--write-config FILE` writes a configuration of the running emulators, so a new
user can `config apply` it and try every command by hand.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
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


SANDBOX_CONFIG_HEADER = """\
# nmbrs-visma configuration of the sandbox that wrote it (`nmbrs-visma sandbox --write-config`): the emulators
# at {visma_url} (Visma.net ERP + Visma Connect) and {nmbrs_url} (Nmbrs REST + identity), and the
# demo companies (nmbrs_visma/sandbox/demo_data.py). Try every command by hand, with the sandbox running:
#
#   {exports}
#   nmbrs-visma config apply {file}
#   nmbrs-visma connect nmbrs            # the emulator approves the demo user at once
#   nmbrs-visma post --period {period} --dry-run
#   nmbrs-visma post --period {period}
#   nmbrs-visma status --period {period}
#
# The variables hold the emulators' public demo credentials (in nmbrs_visma/sandbox), not anyone's secret.
# A sandbox started again on other ports needs this file written (and applied) again.
"""


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port already (bound as uvicorn binds: with SO_REUSEADDR, so a port in
    TIME_WAIT is free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def port_problem(host: str, visma_port: int, nmbrs_port: int) -> str | None:
    """One line saying why the sandbox cannot listen where asked (naming the port and the option to change), or
    None."""
    if visma_port and visma_port == nmbrs_port:
        return f"--visma-port and --nmbrs-port are both {visma_port}: give the emulators two different ports"
    for port, option in ((visma_port, "--visma-port"), (nmbrs_port, "--nmbrs-port")):
        if not port:
            continue
        try:
            busy = port_in_use(host, port)
        except OSError as exc:
            return f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --host or {option}"
        if busy:
            return f"port {port} on {host} is already in use (another sandbox?): choose a free one with {option}"
    return None


def write_sandbox_config(path: Path, sandboxes: Sandboxes) -> None:
    """Write the configuration of these running emulators (`config apply` reads it): one Visma.net service
    account per demo tenant and the Nmbrs demo account, all at the sandbox's URLs, and a mapping of every demo
    company, as `nmbrs-visma demo` configures them. Secrets stay out: the file names the variables."""
    import shlex

    import yaml

    from nmbrs_visma.demo import DEMO_PERIOD_TEXT, demo_config

    data, env = demo_config(sandboxes.visma_url, sandboxes.nmbrs_url)
    header = SANDBOX_CONFIG_HEADER.format(
        visma_url=sandboxes.visma_url,
        nmbrs_url=sandboxes.nmbrs_url,
        exports="\n#   ".join(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())),
        file=shlex.quote(str(path)),
        period=DEMO_PERIOD_TEXT,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    written = path.with_name(f".{path.name}.tmp")
    written.write_text(header + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    written.replace(path)


def serve_forever(
    *, visma_port: int, nmbrs_port: int, host: str = "127.0.0.1", write_config: Path | None = None
) -> int:
    """`nmbrs-visma sandbox`: serve both emulators until interrupted, printing where they listen (and writing
    their configuration to `write_config`). 2, with one line on stderr, when a port is taken or the file cannot
    be written; 0 after Ctrl-C or SIGTERM."""
    from rich.console import Console

    from nmbrs_visma.output import fail

    console = Console(highlight=False)
    if (problem := port_problem(host, visma_port, nmbrs_port)) is not None:
        return fail(problem)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sandboxes = start_sandboxes(host=host, visma_port=visma_port, nmbrs_port=nmbrs_port)
    except RuntimeError as exc:  # a port taken between the check and the start
        return fail(f"{exc}: is --visma-port {visma_port} or --nmbrs-port {nmbrs_port} in use?")
    try:
        console.print(f"Visma.net ERP + Visma Connect emulator: [bold]{sandboxes.visma_url}[/]")
        console.print(f"Nmbrs REST + identity emulator:        [bold]{sandboxes.nmbrs_url}[/]")
        console.print("Seeded with the demo world (nmbrs_visma/sandbox/demo_data.py). Ctrl-C stops.")
        if write_config is not None:
            try:
                write_sandbox_config(write_config, sandboxes)
            except OSError as exc:
                return fail(f"cannot write {write_config}: {exc.strerror or exc}")
            console.print(
                f"Configuration written to [bold]{write_config}[/]: its first lines say how to apply it and try "
                "every command.",
                soft_wrap=True,
            )
        with suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        sandboxes.stop()
    console.print("Sandboxes stopped.")
    return 0
