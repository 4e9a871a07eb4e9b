"""Records that validate themselves: the field types and the one error path they share.

Presets, the fleet manifest and the simulation scenario are frozen pydantic
dataclasses: building one (directly, from a file, or by ``dataclasses.replace``)
checks every field, so a record that exists has finite numbers inside their
bounds, whole numbers where a count is meant, and enums for methods. A bad field
raises :class:`clonefleet.errors.FieldError` (a usage error, exit 2) with one
line naming the field, the value and what is allowed; :func:`record` makes that
so for every record, through :func:`clonefleet.errors.validation_error`.

The numeric fields of presets also take a numpy array of values (every element
checked): the model's functions broadcast, and a sweep puts an array in place of
one number (:mod:`clonefleet.sweep`).

Bounds, so that no product the model forms overflows to ``inf``:

- sizes: whole bytes, 0 to :data:`~clonefleet.units.MAX_BYTES` (2^62);
- rates: :data:`MIN_RATE_IOPS` to :data:`MAX_RATE_IOPS`;
- other positive quantities (IOs per boot, the RAID write penalty): :data:`MIN_QUANTITY` to
  :data:`MAX_QUANTITY`;
- counts of things (disks, processors): whole, 1 to :data:`MAX_COUNT`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import ConfigDict, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from clonefleet.errors import FieldError, validation_error
from clonefleet.units import MAX_BYTES, parse_bytes

#: Every record: unknown fields are refused; numpy arrays and paths may be held.
RECORD_CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

MIN_RATE_IOPS = 1e-6
MAX_RATE_IOPS = 1e12
MIN_QUANTITY = 1e-6
MAX_QUANTITY = 1e12
MAX_COUNT = 10**9
#: Integers beyond this are refused before any float conversion (a 400-digit int would overflow it).
_HUGE_INT = 10**300

T = TypeVar("T")
Check = Callable[[Any], Any]


def _g(x: float) -> str:
    """A bound as people write it: 1e12, 1e-6, 0.5, 1."""
    text = f"{x:g}"
    return text.replace("e+", "e").replace("e-0", "e-").replace("e0", "e")


def _as_number(value: object, allowed: str, parse: Callable[[object], float] | None) -> float | np.ndarray:
    """A float (or a float array) from a number, a numpy value or, when ``parse`` is given, a string."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise ValueError(allowed)
        return value.astype(np.float64, copy=False)
    if isinstance(value, bool | np.bool_):
        raise ValueError(allowed)
    if isinstance(value, str) and parse is not None:
        return float(parse(value))  # UnitError is a ValueError that says what is allowed
    if isinstance(value, int | np.integer):
        if abs(int(value)) > _HUGE_INT:
            raise ValueError(allowed)
        return float(value)
    if isinstance(value, float | np.floating):
        return float(value)
    raise ValueError(allowed)


def quantity(low: float, high: float, allowed: str, *, whole: bool = False, inf_ok: bool = False,
             parse: Callable[[object], float] | None = None) -> Check:
    """A validator of a number (or an array of them) from ``low`` to ``high``; ``allowed`` says so.

    ``whole``: no fraction; ``inf_ok``: ``inf`` stands for "no limit"; ``parse``: strings are parsed
    with it (human units: ``"100 GiB"``).
    """

    def check(value: object) -> float | np.ndarray:
        number = _as_number(value, allowed, parse)
        values = np.asarray(number)
        finite = np.isfinite(values)
        ok = finite & (values >= low) & (values <= high)
        if whole:
            ok &= np.floor(np.where(finite, values, 0.0)) == np.where(finite, values, 0.0)
        if inf_ok:
            ok |= values == math.inf
        if not bool(np.all(ok)):
            raise ValueError(allowed)
        return number

    return check


def whole_number(low: int, high: int, allowed: str | None = None) -> Check:
    """A validator of a Python int from ``low`` to ``high`` (not a bool, not a float, not a string)."""
    text = allowed or f"a whole number from {low:,} to {high:,}"

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= int(value) <= high:
            raise ValueError(text)
        return int(value)

    return check


def _size(low: int) -> Check:
    """Bytes from ``low`` to 2^62; a size between 0 and 1 byte (a subnormal float) is refused too."""
    allowed = f"a size {'of 0 or ' if low == 0 else ''}from 1 B to 4 EiB (2^62 bytes), e.g. '100 GiB'"
    check = quantity(low, MAX_BYTES, allowed, parse=parse_bytes)

    def size(value: object) -> float | np.ndarray:
        number: float | np.ndarray = check(value)
        if bool(np.any((np.asarray(number) > 0) & (np.asarray(number) < 1))):
            raise ValueError(allowed)
        return number

    return size


#: Bytes, 0 or more (a number of bytes or a string with a unit).
size_check = _size(0)
#: Bytes, 1 or more.
positive_size_check = _size(1)
rate_check = quantity(MIN_RATE_IOPS, MAX_RATE_IOPS, f"a rate from {_g(MIN_RATE_IOPS)} to {_g(MAX_RATE_IOPS)} IOPS")
positive_check = quantity(MIN_QUANTITY, MAX_QUANTITY,
                          f"a number greater than 0, from {_g(MIN_QUANTITY)} to {_g(MAX_QUANTITY)}")
non_negative_check = quantity(0.0, MAX_QUANTITY, f"a number from 0 to {_g(MAX_QUANTITY)}")
fraction_check = quantity(0.0, 1.0, "a fraction between 0 and 1")
count_check = quantity(1, MAX_COUNT, f"a whole number greater than 0, at most {_g(MAX_COUNT)}", whole=True)

Size = Annotated[float, PlainValidator(size_check)]
PositiveSize = Annotated[float, PlainValidator(positive_size_check)]
Rate = Annotated[float, PlainValidator(rate_check)]
Positive = Annotated[float, PlainValidator(positive_check)]
NonNegative = Annotated[float, PlainValidator(non_negative_check)]
Fraction = Annotated[float, PlainValidator(fraction_check)]
Count = Annotated[float, PlainValidator(count_check)]


def cross_field(field: str, value: object, allowed: str) -> PydanticCustomError:
    """The error of a check across fields (raise it in a model validator): it names the field it blames."""
    return PydanticCustomError("cross_field", "{field}: {allowed}",
                               {"field": field, "value": value, "allowed": allowed})


def record(kind: str, names: dict[str, str] | None = None) -> Callable[[type[T]], type[T]]:
    """Make a pydantic dataclass raise one-line :class:`FieldError` instead of ``ValidationError``.

    The error is named ``<kind> '<name>'`` when the record has a ``name``; ``names`` maps
    attributes to the names users write (``gi_virtual_bytes`` -> ``gi_size``). A loader re-names
    the error after its file with :meth:`FieldError.at`.
    """

    def decorate(cls: type[T]) -> type[T]:
        validate = cls.__init__

        @functools.wraps(validate)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                validate(self, *args, **kwargs)
            except ValidationError as exc:
                name = kwargs.get("name")
                where = f"{kind} '{name}'" if isinstance(name, str) else kind
                raise validation_error(where, exc, names) from None

        setattr(cls, "__init__", __init__)  # noqa: B010 (mypy refuses assigning a method)
        return cls

    return decorate


__all__ = [
    "RECORD_CONFIG",
    "Count",
    "FieldError",
    "Fraction",
    "NonNegative",
    "Positive",
    "PositiveSize",
    "Rate",
    "Size",
    "cross_field",
    "quantity",
    "record",
    "whole_number",
]
