"""Independent storms side by side: on this machine's cores, or on a Dask cluster.

Storms that do not depend on each other (the runs of ``simulate --golden-images 1,2,3``,
the searches on T of ``validate``, the chunks of VMs whose C is counted) go through one
``concurrent.futures.Executor``:

- :func:`storm_executor` gives one: a process pool on the local cores (the default), a
  ``dask.distributed`` client's executor when an address is given (``--dask
  tcp://host:8786``: the storms run on that cluster's workers), or :class:`Inline`
  (one worker: every call runs at once, in this process);
- :func:`run_all` submits calls and hands back their results in the order given,
  reporting each as it finishes.

Every call is a module-level function with its arguments (a recipe: presets, a seed,
a fleet size), never a closure, so it pickles to another process or machine; every
storm draws its randomness from its own seed, so the same seeds give the same results
bit for bit whichever way the calls run. dask is imported only when an address is given.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TypeVar

from clonefleet.errors import UsageError
from clonefleet.progress import Progress, no_progress

T = TypeVar("T")
#: Modules a local worker imports once, before its first storm (numba and the compiled engine).
WORKER_PRELOAD = ("clonefleet.sim.results", "clonefleet.sim.compare", "clonefleet.sim.storm")


class Inline(Executor):
    """An executor of one worker, this process: each call runs when it is submitted."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller by result(), as a pool does
            done.set_exception(exc)
        return done


def local_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def storm_executor(dask: str | None = None, workers: int | None = None) -> Iterator[Executor]:
    """Where independent storms run: the Dask cluster at ``dask`` (an address such as
    ``tcp://10.0.0.5:8786``), else ``workers`` local processes (default: one per core), or this
    process alone when that is 1. Closed (the pool's processes ended, the client disconnected) when
    the block ends."""
    if dask:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
        try:
            client = Client(dask, timeout=30)  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise UsageError(f"--dask = {dask!r}: no Dask scheduler answers there ({exc})") from None
        try:
            yield client.get_executor()  # type: ignore[no-untyped-call]
        finally:
            client.close()  # type: ignore[no-untyped-call]
        return
    count = local_workers() if workers is None else workers
    if count < 1:
        raise UsageError(f"--workers = {count}: at least 1")
    if count == 1:
        yield Inline()
        return
    # forkserver: workers start from a clean server process (never a fork of a process with threads),
    # which imports numba and the engine once for all of them.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    with ProcessPoolExecutor(count, mp_context=context) as pool:
        yield pool


def executor_slots(executor: Executor) -> int:
    """How many calls ``executor`` runs at once: 1 inline, a local pool's processes, a Dask cluster's
    worker threads (asked of its scheduler when the executor is made)."""
    if isinstance(executor, Inline):
        return 1
    if isinstance(executor, ProcessPoolExecutor):
        return int(getattr(executor, "_max_workers", 1))
    client = getattr(executor, "_client", None)  # dask.distributed's ClientExecutor
    if client is not None:
        return max(1, int(sum(client.nthreads().values())))
    return 1


def run_all(executor: Executor, calls: Sequence[tuple[Callable[..., T], tuple[Any, ...]]],
            progress: Progress = no_progress, stage: str = "storms") -> list[T]:
    """Run every ``(function, args)`` call on ``executor``; their results in the order given.

    ``progress`` hears (``stage``, calls done, calls) as each finishes, in whatever order they do.
    The first call that raises raises here, after the others are cancelled or done."""
    futures = [executor.submit(fn, *args) for fn, args in calls]
    index = {id(f): k for k, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    progress(stage, 0, len(futures))
    try:
        for done, future in enumerate(as_completed(futures), 1):
            results[index[id(future)]] = future.result()
            progress(stage, done, len(futures))
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return results
