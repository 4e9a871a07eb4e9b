"""Errors a user can act on.

Every error the library raises on purpose is a :class:`ClonefleetError` whose
message is one line naming what is wrong and what is allowed. The CLI prints that
line and exits with :attr:`ClonefleetError.exit_code` (2 for usage errors), never
with a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class ClonefleetError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code = 1
    #: True when threads of this process are stuck in a call that never returns (a library waiting on a
    #: dead server): the CLI then exits without joining them, after its one line.
    abandons_threads = False

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the caller passed.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(ClonefleetError):
    """Bad input: a flag, a preset file, a path, a manifest. Exit status 2."""

    exit_code = 2


class FieldError(UsageError):
    """A bad field of a record: `<where>: field '<field>' = <value>: <allowed>`.

    A record only knows its own name; the loader that read it from a file re-raises the error
    :meth:`at` the file, so the line names what the user can open and fix.
    """

    def __init__(self, where: str, field: str, value: object, allowed: str) -> None:
        self.where, self.field, self.value, self.allowed = where, field, value, allowed
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}field '{field}' = {shown}: {allowed}")

    def at(self, where: str) -> FieldError:
        """The same error, named from ``where`` (e.g. ``fleet file 'my.toml'``)."""
        return FieldError(where, self.field, self.value, self.allowed)


def field_error(where: str, field: str, value: object, allowed: str) -> FieldError:
    """Build the standard message: `<where>: field '<field>' = <value>: <allowed>`."""
    return FieldError(where, field, value, allowed)


#: What is allowed, for pydantic's own error types (the records' validators raise ValueError with the text).
_ALLOWED: dict[str, str] = {
    "missing": "missing; required",
    "missing_argument": "missing; required",
    "unexpected_keyword_argument": "unknown field",
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "dataclass_type": "a table",
}


def validation_error(where: str, exc: ValidationError, names: Mapping[str, str] | None = None) -> FieldError:
    """The first error of a record's validation as one line.

    This is the one place where pydantic's errors become clonefleet's: the field (its name in
    the file, through ``names``), the value given and what is allowed. A bad value is reported
    before a field left out.
    """
    errors = exc.errors(include_url=False)
    # A bad value before a field left out: a typo is the likelier fault, and it hides the rest.
    error: Mapping[str, Any] = min(errors, key=lambda e: e["type"] in ("missing", "missing_argument"))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if "field" in ctx:  # a check across fields names the field it blames (records.cross_field)
        return FieldError(where, str(ctx["field"]), ctx.get("value"), str(ctx["allowed"]))
    attr = ".".join(str(part) for part in error["loc"])
    field = (names or {}).get(attr, attr)
    kind = str(error["type"])
    value = None if kind in ("missing", "missing_argument") else error.get("input")
    if kind == "value_error":
        allowed = str(ctx["error"])
    elif kind == "enum":
        allowed = f"one of {ctx.get('expected', '')}"
    else:
        allowed = _ALLOWED.get(kind, str(error["msg"]))
    return FieldError(where, field, value, allowed)


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
