"""Worker pools of provisioning: results as they complete, the rest cancelled if one fails."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def completed_or_cancel(futures: Iterable[Future[T]], stall_s: float | None = None,
                        silent_s: Callable[[], float] | None = None,
                        stalled: Callable[[int], BaseException] | None = None) -> Iterator[Future[T]]:
    """The futures as they complete; if the caller stops early (an error, a signal), every future not
    yet started is cancelled, so no new work begins after a failure.

    With ``stall_s``: when for that long nothing completes and, if given, ``silent_s()`` (the seconds
    since the work last showed progress some other way) says nothing progressed either, ``stalled(pending count)`` is
    raised and the rest cancelled. A call that never returns (librbd retrying a watch on a stopped OSD)
    then fails the run instead of hanging it; run it in :func:`worker_pool`, which does not wait for it.
    """
    every = list(futures)
    pending = set(every)
    last = time.monotonic()

    def quiet_s() -> float:
        since_last = time.monotonic() - last
        return since_last if silent_s is None else min(since_last, silent_s())

    try:
        while pending:
            wait_s = None if stall_s is None else max(stall_s - quiet_s(), 0.0)
            done, pending = wait(pending, timeout=wait_s, return_when=FIRST_COMPLETED)
            if done:
                last = time.monotonic()
                yield from done
            elif stall_s is not None and quiet_s() >= stall_s:
                raise (stalled(len(pending)) if stalled is not None
                       else TimeoutError(f"no operation finished within {stall_s:g} s"))
    except BaseException:  # also GeneratorExit: a consumer that broke off early
        for f in every:
            f.cancel()
        raise


@contextmanager
def worker_pool(workers: int, name: str) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that, when the block fails, cancels what has not started and does not wait for the
    threads still running: one stuck in a call that never returns (librbd waiting on a stopped OSD: its
    watch requests have no timeout) must not hang the failure. Such an error sets ``abandons_threads``
    (:class:`~clonefleet.errors.ClonefleetError`), and the CLI exits without joining them."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
