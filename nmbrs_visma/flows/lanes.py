"""Lanes of Prefect tasks, each with its own limit of tasks in flight, driven from the flow's thread.

Why: with one pool and stages one after another, an administration waits for every company's journals
before it posts, and a slow Nmbrs document holds a slot Visma.net posting could use. With lanes, reading
(`read`) and posting (`post`) each keep up to their limit of tasks running, and the callback of a finished
task (run in the flow's thread, so the flow's state needs no lock) queues the work it unlocks.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from typing import Any

from prefect.futures import PrefectFuture

Submit = Callable[[], PrefectFuture[Any]]
Then = Callable[[PrefectFuture[Any]], None]


class Lanes:
    """`add` work to a lane, then `run` until every lane is empty and nothing is in flight."""

    def __init__(self, **limits: int) -> None:
        if any(limit < 1 for limit in limits.values()):
            raise ValueError(f"every lane needs a limit of at least 1: {limits}")
        self._limits = limits
        self._waiting: dict[str, deque[tuple[Submit, Then]]] = {lane: deque() for lane in limits}
        self._running = dict.fromkeys(limits, 0)
        self._finished: queue.SimpleQueue[tuple[str, PrefectFuture[Any], Then]] = queue.SimpleQueue()
        self.most_in_flight = dict.fromkeys(limits, 0)  # for tests and benchmarks: the limits held

    def add(self, lane: str, submit: Submit, then: Then, *, first: bool = False) -> None:
        """Queue `submit` (which submits one task and returns its future); `then` gets the finished future.

        `first` puts it ahead of the lane's queue: work that finishes something already started (a company's
        journals once its tenant's reference is read) goes before starting more.
        """
        if first:
            self._waiting[lane].appendleft((submit, then))
        else:
            self._waiting[lane].append((submit, then))

    def run(self) -> None:
        """Start what the limits allow; hand each finished task to its callback, in the order they finish."""
        while True:
            self._start()
            if not any(self._running.values()):
                return
            lane, future, then = self._finished.get()
            self._running[lane] -= 1
            then(future)

    def _start(self) -> None:
        for lane, waiting in self._waiting.items():
            while waiting and self._running[lane] < self._limits[lane]:
                submit, then = waiting.popleft()
                future = submit()
                self._running[lane] += 1
                self.most_in_flight[lane] = max(self.most_in_flight[lane], self._running[lane])
                future.add_done_callback(lambda done, lane=lane, then=then: self._finished.put((lane, done, then)))
