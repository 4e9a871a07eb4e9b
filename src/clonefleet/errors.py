"""Errors a user can act on.

Every error the library raises on purpose is a :class:`ClonefleetError` whose
message is one line naming what is wrong and what is allowed. The CLI prints that
line and exits with :attr:`ClonefleetError.exit_code` (2 for usage errors), never
with a traceback.
"""

from __future__ import annotations

from pathlib import Path


class ClonefleetError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the caller passed.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(ClonefleetError):
    """Bad input: a flag, a preset file, a path, a manifest. Exit status 2."""

    exit_code = 2


def field_error(where: str, field: str, value: object, allowed: str) -> UsageError:
    """Build the standard message: `<where>: field '<field>' = <value>: <allowed>`."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    prefix = f"{where}: " if where else ""
    return UsageError(f"{prefix}field '{field}' = {shown}: {allowed}")


def output_folder(folder: str | Path, flag: str = "--out") -> Path:
    """Make ``folder`` (and its parents) for files to come, or refuse it as the value of ``flag``."""
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag} = '{out}': cannot create the folder ({exc.strerror}); give a writable folder") \
            from None
    if not out.is_dir():
        raise UsageError(f"{flag} = '{out}': not a folder; give a writable folder")
    return out
