"""Presets: named, sourced parameter sets shipped as TOML in this package.

Wherever a preset name is accepted, a path to the user's own TOML file is too.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from clonefleet.errors import UsageError
from clonefleet.presets.figures import FigureView, figures_of
from clonefleet.presets.schema import (
    ArrayPreset,
    Figure,
    FleetPreset,
    FunctionPreset,
    Method,
    Mirror,
    SwapDisk,
    build_array,
    build_fleet,
    build_function,
)
from clonefleet.storage.files import read_regular_text, refuse_to_replace, write_text_whole

__all__ = [
    "ArrayPreset",
    "Figure",
    "FigureView",
    "FleetPreset",
    "FunctionPreset",
    "Method",
    "Mirror",
    "PresetInfo",
    "SwapDisk",
    "copy_preset",
    "figures_of",
    "list_presets",
    "load_array",
    "load_fleet",
    "load_function",
    "load_preset",
    "preset_label",
    "resolve_trace",
    "trace_names",
]

_FOLDERS = {"fleet": "fleets", "array": "arrays", "function": "functions"}


@dataclass(frozen=True)
class PresetInfo:
    """One preset as ``clonefleet presets`` lists it."""

    kind: str
    name: str
    description: str
    sources: dict[str, str]  # figure key -> its source (with date) or "assumption: ..."
    figures: tuple[FigureView, ...] = ()  # each figure's value, unit and source


def _shipped(kind: str) -> dict[str, Any]:
    folder = resources.files("clonefleet.presets").joinpath(_FOLDERS[kind])
    return {p.name[: -len(".toml")]: p for p in folder.iterdir() if p.name.endswith(".toml")}


def preset_names(kind: str) -> list[str]:
    """Names of the presets of one kind shipped with clonefleet."""
    return sorted(_shipped(kind))


def _shipped_traces() -> dict[str, Path]:
    folder = Path(str(resources.files("clonefleet.presets").joinpath("traces")))
    return {p.name.removesuffix(".csv.gz"): p for p in folder.glob("*.csv.gz")}


def trace_names() -> list[str]:
    """Names of the boot traces shipped with clonefleet (captured boots, with their provenance)."""
    return sorted(_shipped_traces())


def resolve_trace(name_or_path: str | Path) -> Path:
    """A trace by path or, when no such file or folder exists, by the name of a shipped trace
    (``debian-boot``); anything else is returned as given, for the reader to refuse in one line."""
    path = Path(name_or_path)
    if path.exists() or path.is_symlink():
        return path
    return _shipped_traces().get(str(name_or_path), path)


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


def _info(kind: str, record: FleetPreset | ArrayPreset | FunctionPreset) -> PresetInfo:
    return PresetInfo(kind, record.name, record.description,
                      {k: f.describe() for k, f in record.sources.items()}, tuple(figures_of(record)))


def list_presets() -> list[PresetInfo]:
    """Every shipped preset with the value and source (or assumption) of each figure."""
    return [_info(kind, loader(name)) for kind, loader in _LOADERS.items() for name in preset_names(kind)]


def _kind_of_file(name_or_path: str) -> str:
    """The kind a shipped name or a preset file declares (its ``[preset] kind``)."""
    kinds = [kind for kind in _LOADERS if name_or_path in _shipped(kind)]
    if len(kinds) == 1:
        return kinds[0]
    if kinds:
        raise UsageError(f"'{name_or_path}' names presets of several kinds ({', '.join(kinds)}); give a path")
    path = Path(name_or_path)
    if path.suffix != ".toml" and "/" not in name_or_path and not path.exists():
        known = ", ".join(n for kind in _LOADERS for n in preset_names(kind))
        raise UsageError(f"unknown preset '{name_or_path}'; known: {known} (or a path to a .toml file)")
    _, data = _read("fleet", name_or_path)  # read as a file; the kind is checked below
    header = data.get("preset")
    kind = header.get("kind") if isinstance(header, dict) else None
    if kind not in _LOADERS:
        raise UsageError(f"file '{name_or_path}': preset.kind = {kind!r}: one of fleet, array, function")
    return str(kind)


def load_preset(name_or_path: str | Path) -> PresetInfo:
    """Any preset, shipped (by name) or from a file, with the value and source of each figure."""
    kind = _kind_of_file(str(name_or_path))
    return _info(kind, _LOADERS[kind](str(name_or_path)))


def preset_label(kind: str, name_or_path: str | Path, name: str) -> str:
    """How a plan's title names a loaded preset: its name, and where it came from when it is a file
    whose name is also a shipped preset's (``allflash-2024 (from ./x.toml, not the shipped one)``)."""
    given = str(name_or_path)
    if given in _shipped(kind) or name not in _shipped(kind):
        return name
    return f"{name} (from {given}, not the shipped one)"


_NAME_LINE = re.compile(r'^(\s*name\s*=\s*)(".*?"|\'.*?\')(.*)$')


def copy_preset(source: str, dest: Path, name: str | None = None, force: bool = False) -> PresetInfo:
    """Write a copy of preset ``source`` (a shipped name or a file) to ``dest``, named ``name``
    (default: dest's stem), comments and sources kept; refuse an existing ``dest`` unless ``force``.

    The copy is loaded before it is written (a name the file format refuses never lands) and
    written through a temporary in the same folder, renamed: it appears whole or not at all.
    """
    kind = _kind_of_file(source)
    new_name = dest.stem if name is None else name
    if not new_name.strip() or any(c in new_name for c in '"\\\n'):
        raise UsageError(f"--name = {new_name!r}: a non-empty name without quotes, backslashes or newlines")
    if dest.suffix != ".toml":
        raise UsageError(f"{dest}: the copy must be a .toml file (e.g. my-array.toml)")
    refuse_to_replace(dest, "the copy", force=force)
    shipped = _shipped(kind)
    text = shipped[source].read_text(encoding="utf-8") if source in shipped else \
        read_regular_text(Path(source), f"{kind} file")
    lines, in_header, renamed = text.splitlines(keepends=True), False, False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            in_header = stripped == "[preset]"
        elif in_header and not renamed and (match := _NAME_LINE.match(line.rstrip("\n"))):
            lines[i] = f'{match.group(1)}"{new_name}"{match.group(3)}\n'
            renamed = True
    if not renamed:
        raise UsageError(f"{source}: no 'name = ...' line in its [preset] table to rename")
    copied = f"# A copy of the {kind} preset '{source}', named '{new_name}'.\n" + "".join(lines)
    builders = {"fleet": build_fleet, "array": build_array, "function": build_function}
    try:
        builders[kind](f"{kind} file '{dest}'", tomllib.loads(copied))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: the copy is not valid TOML ({exc})") from None
    write_text_whole(dest, copied, "the copy", force=force)
    return load_preset(dest)
