"""Fixtures of the CLI tests: the fake backend, registered for each test (users never see it)."""

from __future__ import annotations

import pytest

from fakes import fake_backend

__all__ = ["fake_backend"]


@pytest.fixture(autouse=True)
def _fake_backend_registered(fake_backend: None) -> None:
    return None
