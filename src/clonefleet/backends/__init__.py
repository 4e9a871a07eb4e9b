"""Storage backends behind one protocol, found by name.

``qcow2`` (the default) makes clones as qcow2 files with qemu-img, ``reflink``
as reflink copies on xfs or btrfs. :func:`get_backend` builds one by name;
:func:`register` adds another: the tests register ``fake``
(:class:`clonefleet.backends.fake.FakeBackend`, marker files for fast tests of
the engine), which is never offered to users.
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
    "IMAGE_BACKENDS",
    "Backend",
    "BackendUnavailable",
    "CloneUsage",
    "Prepared",
    "Recipe",
    "Usage",
    "backend_names",
    "get_backend",
    "register",
    "unregister",
]

DEFAULT_BACKEND = "qcow2"
#: Backends whose clones are images in a cluster, not files in the fleet directory: their fleets are
#: provisioned by :mod:`clonefleet.provision.rbdfleet` with :mod:`clonefleet.backends.rbd`.
IMAGE_BACKENDS = ("rbd",)

# name -> "module:Class" (imported on first use) or a factory registered at run time
_BUILTIN: dict[str, str] = {
    "qcow2": "clonefleet.backends.qcow2:Qcow2Backend",
    "reflink": "clonefleet.backends.reflink:ReflinkBackend",
}
_FACTORIES: dict[str, Callable[[], Backend]] = {}


def register(name: str, factory: Callable[[], Backend]) -> None:
    """Make ``factory`` available as backend ``name`` (replacing any backend of that name)."""
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    """Remove a backend :func:`register` added (the built-in ones stay)."""
    _FACTORIES.pop(name, None)


def backend_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_FACTORIES))


def get_backend(name: str) -> Backend:
    """A new backend by name; an unknown name is a one-line usage error."""
    if name in _FACTORIES:
        return _FACTORIES[name]()
    if name in IMAGE_BACKENDS:
        raise UsageError(f"backend {name!r}: its clones are images in a cluster, provisioned by "
                         "clonefleet.provision.rbdfleet, not files")
    if name not in _BUILTIN:
        raise UsageError(f"backend {name!r}: unknown; one of {', '.join(backend_names())}")
    module_name, _, class_name = _BUILTIN[name].partition(":")
    factory: Callable[[], Backend] = getattr(importlib.import_module(module_name), class_name)
    return factory()
