"""Worker pools of provisioning: results as they complete, the rest cancelled if one fails."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, as_completed
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
