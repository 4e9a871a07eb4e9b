"""Suite-wide fixtures, and the backend marker enforced.

A test that runs a storage tool (qemu-img, qemu-io, mkfs.*, mount, xfs_*, fio, ...) carries
``@pytest.mark.backend``; one without the marker that starts such a tool fails, in its setup
or its call, with one line that says so (:func:`helpers.storage_tool_guard`). The guard is
applied around those phases by the hooks below rather than by a fixture, so a module-scoped
fixture that builds a golden image for the test is caught too. Teardown is left alone: there
pytest also finalises the module's and the session's fixtures (an xfs unmounted after the
last test), which belong to whichever test ran last. Each xdist worker applies the guard to
the tests it runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from helpers import storage_tool_guard

if TYPE_CHECKING:
    from ceph_cluster import CephCluster

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the CLI in-process, as the entry point does; return exit code, stdout, stderr."""
    from clonefleet.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture(scope="session")
def ceph_cluster() -> Iterator[CephCluster]:
    """A single-node Ceph cluster for the session's RBD tests, started on first use and stopped (by pid)
    when the session ends, whatever way it ends (tests/ceph_cluster.py)."""
    from ceph_cluster import session_cluster

    yield from session_cluster()


def _guarded(item: pytest.Item) -> Generator[None, object, object]:
    if item.get_closest_marker("backend") is not None:
        return (yield)
    with storage_tool_guard(item.nodeid):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded(item))
