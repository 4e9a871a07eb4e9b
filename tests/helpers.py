"""Helpers shared by the tests."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(*names: str) -> None:
    """Skip when a tool is missing on a developer's machine; fail in CI, where everything is installed."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    message = f"missing tool(s): {', '.join(missing)} (make setup installs them)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
