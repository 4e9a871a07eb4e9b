"""How a long library call reports its progress: one callback, ``progress(stage, done, total)``.

``stage`` says what runs now in a few words ("draw the trace", "snapshot: T = 5684", "clones"),
``done`` how many of its ``total`` steps are done; ``total`` is 0 when unknown (a search). The
simulator and provisioning call it between steps, never inside compiled loops; the CLI draws it
(:func:`clonefleet.cli.app.progress_display`), on a terminal only.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The progress callback that reports nothing."""
