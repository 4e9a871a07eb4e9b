"""Human units at the edges: parse and format byte sizes and durations.

Inside the library sizes are bytes (``_bytes``), times are seconds (``_s``) and
IO rates are IO per second (``_iops``). Preset files and CLI flags take human
strings such as ``"100 GiB"``, ``"42 MiB"`` or ``"330 s"``.

This is the edge where hostile numbers stop: a size is a whole number of bytes
from 0 to :data:`MAX_BYTES` (2^62, so any sum of a few sizes still fits an int64),
a duration is 0 or from :data:`MIN_SECONDS` (1 ns) to :data:`MAX_SECONDS`; ``inf``,
``nan``, negative values, 400-digit integers and subnormal durations are refused
with a :class:`UnitError` that says what is allowed.
"""

from __future__ import annotations

import math
import re

_BYTE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "PiB": 2**50,
}
_TIME_UNITS: dict[str, float] = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}

#: Largest size accepted anywhere (4 EiB): far beyond any disk, and sums of sizes stay in an int64.
MAX_BYTES = 2**62
#: Shortest positive duration accepted: 1 ns. Below it a time is noise (or a subnormal float), not a duration.
MIN_SECONDS = 1e-9
#: Longest duration accepted: 10^9 s, about 31 years.
MAX_SECONDS = 1e9

_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")

BYTE_UNITS_ALLOWED = ", ".join(_BYTE_UNITS)
TIME_UNITS_ALLOWED = ", ".join(_TIME_UNITS)


class UnitError(ValueError):
    """A value that is not a number with a known unit; the message says what is allowed."""


def _split(text: str, example: str) -> tuple[float, str]:
    match = _NUMBER_UNIT.match(text)
    if match is None:
        raise UnitError(f"not a number with a unit, e.g. '{example}'")
    return float(match.group(1)), match.group(2)


def _plain_number(value: int | float, what: str) -> float:
    """A Python int or float as a float, refusing integers too large to convert (400 digits)."""
    if isinstance(value, int) and abs(value) > 10**300:
        raise UnitError(f"{what}; {len(str(abs(value)))}-digit integers are not")
    return float(value)


_SIZE_ALLOWED = "a size from 0 B to 4 EiB (2^62 bytes)"


def parse_bytes(value: object) -> int:
    """Parse ``"100 GiB"``, ``"42 MB"``, ``"4096"`` or a number of bytes into bytes (0 to :data:`MAX_BYTES`)."""
    if isinstance(value, bool):
        raise UnitError("a size, not true/false")
    if isinstance(value, int):  # exact: 2^62 + 1 is not 2^62
        if not 0 <= value <= MAX_BYTES:
            raise UnitError(_SIZE_ALLOWED)
        return value
    if isinstance(value, float):
        number, unit = value, "B"
    elif isinstance(value, str):
        number, unit = _split(value, "100 GiB")
        unit = unit or "B"
    else:
        raise UnitError("a size such as '100 GiB' or a number of bytes")
    if unit not in _BYTE_UNITS:
        raise UnitError(f"unknown unit '{unit}'; allowed: {BYTE_UNITS_ALLOWED}")
    result = number * _BYTE_UNITS[unit]
    if not math.isfinite(result):
        raise UnitError(f"a finite size; {_SIZE_ALLOWED}")
    if not 0 <= result <= MAX_BYTES:
        raise UnitError(_SIZE_ALLOWED)
    return int(round(result))


_DURATION_ALLOWED = f"a duration of 0 or from 1 ns to {MAX_SECONDS:.0e} s"


def parse_seconds(value: object) -> float:
    """Parse ``"330 s"``, ``"5 min"``, ``"20 ms"`` or a number of seconds: 0, or
    :data:`MIN_SECONDS` (1 ns) to :data:`MAX_SECONDS`."""
    if isinstance(value, bool):
        raise UnitError("a duration, not true/false")
    if isinstance(value, int | float):
        seconds = _plain_number(value, _DURATION_ALLOWED)
    elif isinstance(value, str):
        number, unit = _split(value, "330 s")
        unit = unit or "s"
        if unit not in _TIME_UNITS:
            raise UnitError(f"unknown unit '{unit}'; allowed: {TIME_UNITS_ALLOWED}")
        seconds = number * _TIME_UNITS[unit]
    else:
        raise UnitError("a duration such as '330 s'")
    if not math.isfinite(seconds):
        raise UnitError(f"a finite duration; {_DURATION_ALLOWED}")
    if seconds != 0 and not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise UnitError(_DURATION_ALLOWED)
    return seconds


def format_bytes(n_bytes: float) -> str:
    """Format bytes with binary prefixes, three significant digits: ``1.35 GiB``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            if unit == "B":
                return f"{int(value)} B"
            text = f"{value:.3g}"
            return f"{value:.0f} {unit}" if "e" in text else f"{text} {unit}"  # 1000 GiB, not 1e+03 GiB
        value /= 1024
    raise AssertionError("unreachable")
