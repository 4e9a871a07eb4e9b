"""The fake backend registered for a test: marker files instead of images (never offered to users)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clonefleet.backends import register, unregister
from clonefleet.backends.fake import FakeBackend


@pytest.fixture
def fake_backend() -> Iterator[None]:
    """Register ``fake`` for one test, then remove it again."""
    register("fake", FakeBackend)
    try:
        yield
    finally:
        unregister("fake")
