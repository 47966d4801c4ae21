"""`Lanes`: each lane keeps to its own limit, callbacks run in the caller's thread, follow-up work goes first."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from nmbrs_visma.flows.lanes import Lanes


class Job:
    """A stand-in for a Prefect future (the one method `Lanes` uses), backed by a thread pool."""

    def __init__(self, pool: ThreadPoolExecutor, work: Callable[[], Any]) -> None:
        self._future: Future[Any] = pool.submit(work)

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        self._future.add_done_callback(lambda _: fn(self))

    def result(self) -> Any:
        return self._future.result()


class Meter:
    """Counts tasks running per lane and remembers the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def work(self, lane: str, seconds: float = 0.02) -> Callable[[], str]:
        def run() -> str:
            with self.lock:
                self.now[lane] += 1
                self.most[lane] = max(self.most[lane], self.now[lane])
            time.sleep(seconds)
            with self.lock:
                self.now[lane] -= 1
            return lane

        return run


def test_each_lane_keeps_to_its_limit_and_every_task_runs() -> None:
    meter, done = Meter(), Counter[str]()
    lanes = Lanes(read=3, post=2)
    with ThreadPoolExecutor(16) as pool:
        for lane in ["read"] * 12 + ["post"] * 8:
            lanes.add(lane, lambda lane=lane: Job(pool, meter.work(lane)), lambda job: done.update([job.result()]))
        lanes.run()
    assert done == Counter(read=12, post=8)
    assert meter.most == Counter(read=3, post=2)  # reached, never passed, though the pool had room for more
    assert lanes.most_in_flight == {"read": 3, "post": 2}


def test_callbacks_run_in_the_callers_thread_and_may_queue_follow_up_work() -> None:
    lanes = Lanes(read=1)
    order: list[str] = []
    threads: set[int] = set()

    def then(name: str) -> Callable[[Job], None]:
        def record(job: Job) -> None:
            threads.add(threading.get_ident())
            order.append(name)
            if name == "a":  # a's follow-up joins the lane's queue, behind b and c
                lanes.add("read", lambda: Job(pool, lambda: None), then("a2"))

        return record

    with ThreadPoolExecutor(4) as pool:
        for name in "abc":
            lanes.add("read", lambda: Job(pool, lambda: None), then(name))
        lanes.run()
    assert order == ["a", "b", "c", "a2"]
    assert threads == {threading.get_ident()}


@pytest.mark.parametrize("fed", [False, True])
def test_a_fed_lane_reads_ahead_only_as_far_as_its_target_needs(fed: bool) -> None:
    """Each read queues a post; fed, reading stops while a post already waits, so work is not done early."""
    lanes = Lanes(read=4, post=1)
    if fed:
        lanes.feed("read", "post", queued=1)
    most_waiting = [0]
    posted = Counter[str]()

    def after_read(job: Job) -> None:
        lanes.add("post", lambda: Job(pool, meter.work("post", 0.01)), lambda job: posted.update([job.result()]))
        most_waiting[0] = max(most_waiting[0], lanes.waiting("post"))

    meter = Meter()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(30):
            lanes.add("read", lambda: Job(pool, meter.work("read", 0.0)), after_read)
        lanes.run()
    assert posted == Counter(post=30)
    if fed:
        # the one allowed, plus reads running when it filled, plus one started before a callback queued its post
        assert most_waiting[0] <= 1 + 4 + 1
    else:
        assert most_waiting[0] > 10


def test_a_lane_fed_into_two_counts_what_waits_in_both() -> None:
    """Read feeds look, look feeds post: reading holds back while look and post together have enough queued."""
    lanes = Lanes(read=4, look=1, post=1)
    lanes.feed("read", "look", "post", queued=2)
    most_waiting = [0]
    posted = Counter[str]()
    meter = Meter()

    def note() -> None:
        most_waiting[0] = max(most_waiting[0], lanes.waiting("look") + lanes.waiting("post"))

    def after_look(job: Job) -> None:
        lanes.add("post", lambda: Job(pool, meter.work("post", 0.03)), lambda job: posted.update([job.result()]))
        note()

    def after_read(job: Job) -> None:
        lanes.add("look", lambda: Job(pool, meter.work("look", 0.002)), after_look)
        note()

    with ThreadPoolExecutor(8) as pool:
        for _ in range(30):
            lanes.add("read", lambda: Job(pool, meter.work("read", 0.0)), after_read)
        lanes.run()
    assert posted == Counter(post=30)
    assert most_waiting[0] <= 2 + 4 + 1  # as above: the allowed, the reads running, one started before a callback


def test_a_lane_needs_room_for_one_task() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Lanes(read=0)


def test_a_freed_slot_is_refilled_before_the_callback_runs() -> None:
    """A slow callback (status rows, an artifact queued) does not keep the lane's next task waiting."""
    lanes = Lanes(post=1)
    started: dict[str, float] = {}
    callback_ended: list[float] = []

    def job(name: str) -> Callable[[], str]:
        def run() -> str:
            started[name] = time.monotonic()
            return name

        return run

    def slow_callback(done: Job) -> None:
        time.sleep(0.2)
        callback_ended.append(time.monotonic())

    with ThreadPoolExecutor(2) as pool:
        lanes.add("post", lambda: Job(pool, job("first")), slow_callback)
        lanes.add("post", lambda: Job(pool, job("second")), lambda done: None)
        lanes.run()
    assert started["second"] < callback_ended[0]


def test_busy_says_whether_a_lane_has_work_running_or_queued() -> None:
    lanes = Lanes(read=1, plan=1)
    seen: list[tuple[bool, bool]] = []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(2):
            lanes.add(
                "read",
                lambda: Job(pool, lambda: time.sleep(0.01)),
                lambda _done: seen.append((lanes.busy("read"), lanes.busy("plan"))),
            )
        assert lanes.busy("read") and not lanes.busy("plan")
        lanes.run()
    assert seen == [(True, False), (False, False)]  # the second read still running after the first, then none
    assert not lanes.busy("read")
