"""Worker pools of provisioning: results as they complete, the rest cancelled on failure, and a run
whose operations stop answering fails instead of hanging (the librbd watch on a stopped OSD)."""

from __future__ import annotations

import threading
import time

import pytest

from clonefleet.provision.pool import completed_or_cancel, worker_pool


class Stalled(Exception):
    pass


def test_futures_come_back_as_they_complete_and_the_rest_are_cancelled_on_failure() -> None:
    release = threading.Event()
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("boom")
        release.wait(5)
        return i

    with pytest.raises(ValueError, match="boom"), worker_pool(1, "t") as pool:
        futures = [pool.submit(work, i) for i in range(5)]
        for f in completed_or_cancel(futures):
            f.result()
    release.set()
    assert started == [0]  # one worker: after the failure, nothing else began
    assert all(f.cancelled() for f in futures[1:])


def test_a_call_that_never_returns_fails_the_run_and_is_not_waited_for() -> None:
    never = threading.Event()
    pool_exited = threading.Event()

    def work(i: int) -> int:
        if i == 2:
            never.wait()  # stuck, as librbd retrying a watch for ever
        return i

    got: list[int] = []
    try:
        with pytest.raises(Stalled, match="1 pending"), worker_pool(2, "t") as pool:
            futures = [pool.submit(work, i) for i in range(3)]
            for f in completed_or_cancel(futures, 0.3, stalled=lambda n: Stalled(f"{n} pending")):
                got.append(f.result())
        pool_exited.set()  # the pool did not join the stuck thread
    finally:
        never.set()
    assert sorted(got) == [0, 1] and pool_exited.is_set()


def test_progress_reported_by_the_work_keeps_a_slow_call_alive() -> None:
    """A long operation (a flatten, a removal) that reports progress is not a stall, however long it takes."""
    clock = {"t": time.monotonic()}

    def slow() -> str:
        for _ in range(8):  # 0.8 s in all, more than twice the stall bound, reporting every 0.1 s
            time.sleep(0.1)
            clock["t"] = time.monotonic()
        return "done"

    def silent_s() -> float:
        return time.monotonic() - clock["t"]

    with worker_pool(1, "t") as pool:
        futures = [pool.submit(slow)]
        results = [f.result() for f in completed_or_cancel(futures, 0.3, silent_s,
                                                            stalled=lambda n: Stalled(f"{n} pending"))]
    assert results == ["done"]


def test_without_progress_the_same_slow_call_is_a_stall() -> None:
    stop = threading.Event()

    def slow() -> str:
        stop.wait(0.8)
        return "done"

    with pytest.raises(Stalled), worker_pool(1, "t") as pool:
        futures = [pool.submit(slow)]
        try:
            for f in completed_or_cancel(futures, 0.3, lambda: 10.0, stalled=lambda n: Stalled(f"{n} pending")):
                f.result()
        finally:
            stop.set()
