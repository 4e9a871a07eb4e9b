"""How long a plan looks ahead and what it must leave free: the horizon, refresh and recompose
policies, the datastore's capacity and the headroom (``plan --days --refresh --recompose --capacity
--headroom``).

:class:`Lifetime` validates itself: a horizon of whole days from 0 to :data:`MAX_DAYS`, a refresh or
recompose period of whole days no longer than the horizon (``inf``: never), a headroom in [0, 1) and a
capacity in bytes. The growth model it drives is :mod:`clonefleet.model.growth`; the planner composes
them (:func:`clonefleet.planner.life_curve`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from clonefleet.errors import UsageError
from clonefleet.units import MAX_BYTES, UnitError, format_bytes, parse_bytes

#: The longest horizon a plan takes: ten years of days.
MAX_DAYS = 3650
#: Refresh policies by name: ``logoff`` is a refresh at every logoff, one a day.
REFRESH_NAMES = {"never": math.inf, "logoff": 1.0}
_PERIOD = re.compile(r"^\s*(\d+)\s*d?\s*$")


def check_days(days: object, flag: str = "--days") -> int:
    """A number of days (a horizon, a clone's age): whole days from 0 to :data:`MAX_DAYS`."""
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_DAYS:
        raise UsageError(f"{flag} = {days!r}: whole days from 0 to {MAX_DAYS}")
    return days


def parse_period_days(text: str, flag: str) -> float:
    """``never`` (inf), ``logoff`` (1) or ``Nd`` (N whole days, N >= 1) as days."""
    key = text.strip().lower()
    if key in REFRESH_NAMES and not (flag == "--recompose" and key == "logoff"):
        return REFRESH_NAMES[key]
    match = _PERIOD.match(key)
    if match is None or int(match.group(1)) < 1 or int(match.group(1)) > MAX_DAYS:
        names = "never, logoff" if flag != "--recompose" else "never"
        raise UsageError(f"{flag} = {text!r}: one of {names}, or a period of whole days such as 7d "
                         f"(1d to {MAX_DAYS}d)")
    return float(match.group(1))


def period_text(days: float) -> str:
    """The period as the flags take it: ``never``, ``logoff`` or ``7d``."""
    if math.isinf(days):
        return "never"
    return "logoff" if days == 1 else f"{days:.0f}d"


@dataclass(frozen=True)
class Lifetime:
    """The horizon of a plan and what it must stay under (all optional; the default is the paper's: the
    first boot only, no datastore given, no headroom)."""

    days: int = 0  # horizon [days]; 0 = the first boot only
    refresh_days: float = math.inf  # clones reset to their boot footprint every this many days (1: at logoff)
    recompose_days: float = math.inf  # a new GI version every this many days: every clone rebuilt
    capacity_bytes: float | None = None  # the datastore the fleet must fit in [bytes]
    headroom: float = 0.0  # share of capacity and of each resource to keep free

    def __post_init__(self) -> None:
        check_days(self.days)
        for flag, period in (("--refresh", self.refresh_days), ("--recompose", self.recompose_days)):
            if not (period == math.inf or (isinstance(period, int | float) and math.isfinite(period)
                                           and period >= 1 and period == int(period))):
                raise UsageError(f"{flag} = {period!r}: a period of whole days of at least 1, or never")
            if math.isfinite(period) and period > self.days:
                raise UsageError(f"{flag} = {period_text(period)}: longer than the horizon --days {self.days}; "
                                 f"give --days {period:.0f} or more, or a shorter period")
        if not (isinstance(self.headroom, int | float) and 0 <= self.headroom < 1):
            raise UsageError(f"--headroom = {self.headroom!r}: a share of capacity to keep free, from 0 up to "
                             "(not including) 1, e.g. 0.2")
        if self.capacity_bytes is not None and not 1 <= self.capacity_bytes <= MAX_BYTES:
            raise UsageError(f"--capacity = {self.capacity_bytes!r}: a size from 1 B to 4 EiB, e.g. 20TiB")

    @property
    def target_utilisation(self) -> float:
        """The most of capacity and of each resource a plan may use: 1 - headroom."""
        return 1.0 - self.headroom

    @property
    def capacity_limit_bytes(self) -> float | None:
        """The capacity the fleet must stay under: the datastore times the target utilisation."""
        return None if self.capacity_bytes is None else self.capacity_bytes * self.target_utilisation

    @property
    def asks_over_time(self) -> bool:
        """True when the plan looks past the first boot or against a datastore."""
        return self.days > 0 or self.capacity_bytes is not None or self.headroom > 0

    def to_dict(self) -> dict[str, object]:
        return {"days": self.days, "refresh": period_text(self.refresh_days),
                "refresh_days": None if math.isinf(self.refresh_days) else self.refresh_days,
                "recompose_days": None if math.isinf(self.recompose_days) else self.recompose_days,
                "capacity_bytes": self.capacity_bytes, "headroom": self.headroom}

    def describe(self) -> str:
        parts = [f"{self.days} days, refresh {period_text(self.refresh_days)}"]
        if math.isfinite(self.recompose_days):
            parts.append(f"recompose every {self.recompose_days:.0f} days")
        if self.capacity_bytes is not None:
            parts.append(f"datastore {format_bytes(self.capacity_bytes)}")
        if self.headroom:
            parts.append(f"headroom {100 * self.headroom:.0f} %")
        return ", ".join(parts)


def parse_capacity(text: str | None) -> float | None:
    """``--capacity 20TiB`` as bytes (None when not given); 0 is refused."""
    if text is None:
        return None
    try:
        value = parse_bytes(text)
    except UnitError as exc:
        raise UsageError(f"--capacity = {text!r}: {exc}, e.g. 20TiB") from None
    if value < 1:
        raise UsageError(f"--capacity = {text!r}: a size of at least 1 B, e.g. 20TiB")
    return float(value)


NO_LIFETIME = Lifetime()
