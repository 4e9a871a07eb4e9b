"""Backends: every registered one follows the protocol; the registry finds them by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from clonefleet.backends import Backend, backend_names, get_backend, register, unregister
from clonefleet.backends.fake import FakeBackend
from clonefleet.errors import UsageError
from clonefleet.presets import Method
from clonefleet.storage.goldimage import GoldenImageInfo


@pytest.mark.parametrize("name", ["qcow2", "reflink"])
def test_builtin_backends_follow_the_protocol(name: str) -> None:
    backend = get_backend(name)
    assert isinstance(backend, Backend)
    assert backend.name == name and backend.description


def test_the_fake_follows_the_protocol_and_is_not_offered_to_users() -> None:
    assert isinstance(FakeBackend(), Backend)
    assert backend_names() == ["qcow2", "reflink"]
    with pytest.raises(UsageError, match="one of qcow2, reflink"):
        get_backend("fake")


def test_unknown_backend_is_a_one_line_usage_error() -> None:
    with pytest.raises(UsageError, match="one of qcow2, reflink"):
        get_backend("zfs")


def test_register_adds_a_backend() -> None:
    register("fake-twin", FakeBackend)
    try:
        assert "fake-twin" in backend_names()
        assert isinstance(get_backend("fake-twin"), FakeBackend)
    finally:
        unregister("fake-twin")
    assert "fake-twin" not in backend_names()


@pytest.mark.parametrize(("name", "method", "function", "unit"), [
    ("qcow2", Method.SNAPSHOT, "qcow2-linked", 65536),
    ("qcow2", Method.THIN, "qcow2-copy", 65536),
    ("qcow2", Method.FULL, "full", 65536),
    ("reflink", Method.SNAPSHOT, "reflink", 4096),
    ("reflink", Method.THIN, "sparse copy (4 KiB blocks)", 4096),
])
def test_each_backend_and_method_has_its_model_function(name: str, method: Method, function: str,
                                                        unit: int) -> None:
    gi = GoldenImageInfo(Path("/gi.img"), "raw", 2**20, 2**20, "0" * 64, 1)
    recipe = get_backend(name).plan(gi, method, 65536)
    assert recipe.model_function.name == function and recipe.model_function.unit_bytes == unit
    assert recipe.method is method and recipe.steps


def test_qcow2_cluster_size_sets_the_model_unit() -> None:
    gi = GoldenImageInfo(Path("/gi.qcow2"), "qcow2", 2**30, 2**20, "0" * 64, 1)
    recipe = get_backend("qcow2").plan(gi, Method.SNAPSHOT, 4096)
    assert recipe.model_function.unit_bytes == 4096 and "4 KiB" in recipe.model_function.name
