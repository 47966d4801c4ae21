"""Independent I/O calls at the same time, on one thread pool for the whole process.

Used by the API clients (a tenant's three reference reads) and by posting (an administration's period
listings, its intent writes, its outcome writes while the next create is out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

_T = TypeVar("_T")
_THREADS = 32


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="fan-out")


def at_once(calls: Sequence[Callable[[], _T]], *, most: int = 4) -> list[_T]:
    """Run independent I/O calls at the same time, at most `most` at once, and return their results in order (the
    first exception is raised, after every call has ended). The calls must not use `at_once` themselves: they
    run on a shared pool of bounded size.

    Why one pool for the process: a pool per call would start its threads each time, and in a busy run each new
    thread waits for the interpreter lock before its first request leaves.
    """
    if len(calls) <= 1:
        return [call() for call in calls]
    results: list[_T] = []
    pool = _pool()
    for start in range(0, len(calls), most):
        futures = [pool.submit(call) for call in calls[start : start + most]]
        wait(futures)
        results.extend(future.result() for future in futures)
    return results


def in_background(call: Callable[[], _T]) -> Future[_T]:
    """Start one I/O call on the same shared pool as `at_once`, for work the caller waits for later."""
    return _pool().submit(call)
