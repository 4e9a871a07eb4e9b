"""Storage backends behind one protocol, found by name.

``qcow2`` (the default) makes clones as qcow2 files with qemu-img, ``reflink``
as reflink copies on xfs or btrfs, ``fake`` as small marker files for fast
unit tests of the engine. :func:`get_backend` builds one by name;
:func:`register` adds another.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from clonefleet.backends.base import (
    Backend,
    BackendUnavailable,
    CloneUsage,
    Prepared,
    Recipe,
    Usage,
)
from clonefleet.errors import UsageError

__all__ = [
    "DEFAULT_BACKEND",
    "Backend",
    "BackendUnavailable",
    "CloneUsage",
    "Prepared",
    "Recipe",
    "Usage",
    "backend_names",
    "get_backend",
    "register",
]

DEFAULT_BACKEND = "qcow2"

# name -> "module:Class" (imported on first use) or a factory registered at run time
_BUILTIN: dict[str, str] = {
    "qcow2": "clonefleet.backends.qcow2:Qcow2Backend",
    "reflink": "clonefleet.backends.reflink:ReflinkBackend",
    "fake": "clonefleet.backends.fake:FakeBackend",
}
_FACTORIES: dict[str, Callable[[], Backend]] = {}


def register(name: str, factory: Callable[[], Backend]) -> None:
    """Make ``factory`` available as backend ``name`` (replacing any backend of that name)."""
    _FACTORIES[name] = factory


def backend_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_FACTORIES))


def get_backend(name: str) -> Backend:
    """A new backend by name; an unknown name is a one-line usage error."""
    if name in _FACTORIES:
        return _FACTORIES[name]()
    if name not in _BUILTIN:
        raise UsageError(f"backend {name!r}: unknown; one of {', '.join(backend_names())}")
    module_name, _, class_name = _BUILTIN[name].partition(":")
    factory: Callable[[], Backend] = getattr(importlib.import_module(module_name), class_name)
    return factory()
