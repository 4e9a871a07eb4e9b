"""Human units at the edges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet.units import UnitError, format_bytes, parse_bytes, parse_seconds


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
