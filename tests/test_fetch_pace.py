"""Pace: a few files at once while the server keeps up, every thread once it makes us wait."""

from __future__ import annotations

import threading
import time

from dlstore.errors import CancelledError
from dlstore.fetch import FAST_FETCHES, SLOW_SECONDS, Pace


def test_starts_with_a_few_places_and_widens_for_good() -> None:
    pace = Pace(16)
    assert pace.open == FAST_FETCHES and not pace.wide
    pace.widen()
    assert pace.open == 16 and pace.wide
    assert Pace(1).wide  # one thread: nothing to hold back


def test_a_slow_answer_or_a_slow_body_widens() -> None:
    fast = Pace(16)
    fast.check(time.monotonic(), 0)
    assert not fast.wide
    slow = Pace(16)
    slow.check(time.monotonic() - 2 * SLOW_SECONDS, 0)  # the answer took long
    assert slow.wide
    trickle = Pace(16)
    trickle.check(time.monotonic() - 0.5, 4_000_000)  # 8 MB/s on this connection
    assert trickle.wide


def test_a_waiting_job_enters_when_a_place_frees_or_it_widens() -> None:
    pace, stop = Pace(4, start=1), threading.Event()
    pace.enter(stop)
    entered = threading.Event()
    waiter = threading.Thread(target=lambda: (pace.enter(stop), entered.set()))
    waiter.start()
    assert not entered.wait(0.1)
    pace.widen()
    assert entered.wait(2)
    waiter.join()


def test_a_stop_ends_the_wait() -> None:
    pace, stop = Pace(4, start=1), threading.Event()
    pace.enter(stop)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            pace.enter(stop)
        except CancelledError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    stop.set()
    pace.wake_all()
    waiter.join(2)
    assert not waiter.is_alive() and errors
