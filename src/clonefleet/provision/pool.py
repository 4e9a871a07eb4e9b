"""Worker pools of provisioning: results as they complete, the rest cancelled if one fails."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def completed_or_cancel(futures: Iterable[Future[T]]) -> Iterator[Future[T]]:
    """The futures as they complete; if the caller stops early (an error, a signal), every future not
    yet started is cancelled, so no new work begins after a failure."""
    pending = list(futures)
    try:
        yield from as_completed(pending)
    except BaseException:  # also GeneratorExit: a consumer that broke off early
        for f in pending:
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
