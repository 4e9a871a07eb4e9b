"""Human units at the edges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet.units import MAX_BYTES, MIN_SECONDS, UnitError, format_bytes, parse_bytes, parse_seconds


@pytest.mark.parametrize(("text", "value"), [
    ("100 GB", 100 * 10**9), ("100 GiB", 100 * 2**30), ("42MiB", 42 * 2**20), ("4096", 4096),
    ("1.5 KiB", 1536), (512, 512), ("0 B", 0),
])
def test_parse_bytes(text: object, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["100 GX", "ten GiB", "", "1e999 GiB", True, None, "GiB"])
def test_parse_bytes_refuses(text: object) -> None:
    with pytest.raises(UnitError):
        parse_bytes(text)


def test_unit_error_lists_what_is_allowed() -> None:
    with pytest.raises(UnitError, match="allowed: B, KB, MB, GB, TB, PB, KiB, MiB, GiB"):
        parse_bytes("100 GX")


def test_parse_seconds() -> None:
    assert parse_seconds("330 s") == 330
    assert parse_seconds("5 min") == 300
    assert parse_seconds("20 ms") == pytest.approx(0.02)
    with pytest.raises(UnitError, match="allowed: ms, s, min, h"):
        parse_seconds("3 days")


@given(st.integers(0, 2**60))
def test_format_then_parse_is_close(n: int) -> None:
    text = format_bytes(n)
    assert abs(parse_bytes(text) - n) <= max(0.005 * n, 1)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "inf GiB", "1e400 GiB", 10**400, -(10**400), 1e300,
                                   "1e300 B", -1, "-5 GiB", 2**62 + 1, "4097 PiB"])
def test_parse_bytes_refuses_hostile_sizes(value: object) -> None:
    with pytest.raises(UnitError, match="size|not a number with a unit, e.g. '100 GiB'"):
        parse_bytes(value)


def test_parse_bytes_takes_up_to_two_to_the_62() -> None:
    assert parse_bytes(2**62) == MAX_BYTES
    assert parse_bytes("4 PiB") == 4 * 2**50


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "nan s", 1e-320, "1e-320 s", 5e-324, -1.0, "-3 s",
                                   10**400, 1e10, "1e400 h"])
def test_parse_seconds_refuses_hostile_durations(value: object) -> None:
    with pytest.raises(UnitError, match="duration|not a number with a unit, e.g. '330 s'"):
        parse_seconds(value)


def test_parse_seconds_floor_is_one_nanosecond() -> None:
    assert parse_seconds(0) == 0.0
    assert parse_seconds(MIN_SECONDS) == 1e-9
    assert parse_seconds("0.000001 ms") == pytest.approx(1e-9)
    with pytest.raises(UnitError, match="from 1 ns"):
        parse_seconds("0.0000001 ms")
