"""How a long simulator call reports its progress: one callback, ``progress(stage, done, total)``.

``stage`` says what runs now in a few words ("draw the trace", "snapshot: T = 5684"), ``done`` how
many of its ``total`` steps are done; ``total`` is 0 when unknown (a bisection). The library calls
it between steps, never inside the compiled loops; the CLI draws it, on a terminal only.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The progress callback that reports nothing."""
