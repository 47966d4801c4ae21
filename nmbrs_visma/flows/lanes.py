"""Lanes of work, each with its own limit of work in flight, driven from the flow's thread.

Why: with one pool and stages one after another, an administration waits for every company's journals
before it posts, and a slow Nmbrs document holds a slot Visma.net posting could use. With lanes, reading
(`read`) and posting (`post`) each keep up to their limit of work running, and the callback of finished work
(run in the flow's thread, so the flow's state needs no lock) queues the work it unlocks. A lane's work is
anything that returns a future: a Prefect task's `submit`, or a plain executor's.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol


class Future(Protocol):
    """What lanes need of a future: `PrefectFuture` and `concurrent.futures.Future` both fit."""

    def result(self, timeout: float | None = None) -> Any: ...

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


Submit = Callable[[], Future]
Then = Callable[[Any], None]


class Lanes:
    """`add` work to a lane, then `run` until every lane is empty and nothing is in flight."""

    def __init__(self, **limits: int) -> None:
        if any(limit < 1 for limit in limits.values()):
            raise ValueError(f"every lane needs a limit of at least 1: {limits}")
        self._limits = limits
        self._waiting: dict[str, deque[tuple[Submit, Then]]] = {lane: deque() for lane in limits}
        self._running = dict.fromkeys(limits, 0)
        self._finished: queue.SimpleQueue[tuple[str, Future, Then]] = queue.SimpleQueue()
        self.most_in_flight = dict.fromkeys(limits, 0)  # for tests and benchmarks: the limits held
        self._feeds: dict[str, tuple[tuple[str, ...], int]] = {}

    def feed(self, lane: str, *targets: str, queued: int) -> None:
        """Start `lane`'s work only while fewer than `queued` wait in the `targets`' queues together: read ahead as
        far as posting needs, not further (work done too early holds memory and competes for the CPU)."""
        self._feeds[lane] = (targets, queued)

    def add(self, lane: str, submit: Submit, then: Then) -> None:
        """Queue `submit` (which starts one piece of work and returns its future); `then` gets the finished future."""
        self._waiting[lane].append((submit, then))

    def run(self) -> None:
        """Start what the limits allow; hand each finished future to its callback, in the order they finish."""
        while True:
            self._start()
            if not any(self._running.values()):
                return
            lane, future, then = self._finished.get()
            self._running[lane] -= 1
            self._start()  # refill the freed slot from the queue first: the callback is not on its critical path
            then(future)

    def waiting(self, lane: str) -> int:
        """Tasks queued in `lane`, not started yet."""
        return len(self._waiting[lane])

    def busy(self, lane: str) -> bool:
        """Whether `lane` has work running or queued."""
        return bool(self._running[lane] or self._waiting[lane])

    def _start(self) -> None:
        started = True
        while started:  # starting one lane's work may let a lane it feeds start too
            started = False
            for lane, waiting in self._waiting.items():
                while waiting and self._running[lane] < self._limits[lane] and self._fed(lane):
                    submit, then = waiting.popleft()
                    future = submit()
                    self._running[lane] += 1
                    self.most_in_flight[lane] = max(self.most_in_flight[lane], self._running[lane])
                    future.add_done_callback(lambda done, lane=lane, then=then: self._finished.put((lane, done, then)))
                    started = True

    def _fed(self, lane: str) -> bool:
        if lane not in self._feeds:
            return True
        targets, queued = self._feeds[lane]
        return sum(self.waiting(target) for target in targets) < queued
