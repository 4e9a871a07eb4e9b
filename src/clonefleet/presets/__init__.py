"""Presets: named, sourced parameter sets shipped as TOML in this package.

Wherever a preset name is accepted, a path to the user's own TOML file is too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from clonefleet.errors import UsageError
from clonefleet.presets.schema import (
    ArrayPreset,
    Figure,
    FleetPreset,
    FunctionPreset,
    Method,
    Mirror,
    build_array,
    build_fleet,
    build_function,
)
from clonefleet.storage.files import read_regular_text

__all__ = [
    "ArrayPreset",
    "Figure",
    "FleetPreset",
    "FunctionPreset",
    "Method",
    "Mirror",
    "PresetInfo",
    "list_presets",
    "load_array",
    "load_fleet",
    "load_function",
]

_FOLDERS = {"fleet": "fleets", "array": "arrays", "function": "functions"}


@dataclass(frozen=True)
class PresetInfo:
    kind: str
    name: str
    description: str
    sources: dict[str, str]


def _shipped(kind: str) -> dict[str, Any]:
    folder = resources.files("clonefleet.presets").joinpath(_FOLDERS[kind])
    return {p.name[: -len(".toml")]: p for p in folder.iterdir() if p.name.endswith(".toml")}


def preset_names(kind: str) -> list[str]:
    """Names of the presets of one kind shipped with clonefleet."""
    return sorted(_shipped(kind))


def _read(kind: str, name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    text_name = str(name_or_path)
    shipped = _shipped(kind)
    if text_name in shipped:
        where, raw = f"{kind} preset '{text_name}'", shipped[text_name].read_text(encoding="utf-8")
    else:
        path = Path(text_name)
        looks_like_path = path.suffix == ".toml" or "/" in text_name or path.exists()
        if not looks_like_path:
            raise UsageError(f"unknown {kind} preset '{text_name}'; known: {', '.join(sorted(shipped))} "
                             "(or a path to a .toml file)")
        where = f"{kind} file '{text_name}'"
        # A FIFO, a device or a directory is refused before a byte is read; so is a huge file.
        raw = read_regular_text(path, f"{kind} file")
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML ({exc}); a TOML preset file is expected") from None
    return where, data


def load_fleet(name_or_path: str | Path) -> FleetPreset:
    """A fleet preset by name (``desktop-win7``) or from a TOML file."""
    return build_fleet(*_read("fleet", name_or_path))


def load_array(name_or_path: str | Path) -> ArrayPreset:
    """An array preset by name (``midrange-2012``) or from a TOML file."""
    return build_array(*_read("array", name_or_path))


def load_function(name_or_path: str | Path) -> FunctionPreset:
    """A storage-function preset by name (``snapshot``, ``qcow2-linked``) or from a TOML file."""
    return build_function(*_read("function", name_or_path))


_LOADERS: dict[str, Callable[[str], FleetPreset | ArrayPreset | FunctionPreset]] = {
    "fleet": load_fleet, "array": load_array, "function": load_function}


def list_presets() -> list[PresetInfo]:
    """Every shipped preset with the source (or assumption) of each figure."""
    infos = []
    for kind, loader in _LOADERS.items():
        for name in preset_names(kind):
            record = loader(name)
            infos.append(PresetInfo(kind, name, record.description,
                                    {k: f.describe() for k, f in record.sources.items()}))
    return infos
