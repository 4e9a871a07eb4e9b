"""Where a report goes: checked before any work, written whole, and never over a file clonefleet did not write.

:meth:`Target.of` refuses, in one line, an output that is a folder, an existing file without ``--force``, an
existing file that clonefleet report did not write (even with ``--force``: it has no :data:`MARKER`), an
unknown format and an unknown figure. :func:`write` renders and writes through a temporary beside the file,
renamed over it: the file appears whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clonefleet.errors import UsageError
from clonefleet.report.build import Report
from clonefleet.report.figures import MARKER, figure_bytes
from clonefleet.report.render import SUFFIXES, Format, figures_of_report, render
from clonefleet.storage.files import write_bytes_whole

#: Figures ``--figure`` writes alone (the simulated storm's are drawn by ``clonefleet simulate --plots``).
FIGURES = ("capacity", "growth", "comparison")
FIGURE_SUFFIXES = (".svg", ".png")
#: How far into an existing file the marker is looked for (it is in the first lines of everything written).
MARKER_REACH_BYTES = 64 * 1024


@dataclass(frozen=True)
class Target:
    """The checked output: a path and what goes there (a format, or one figure)."""

    path: Path
    format: Format | None  # None: a figure
    figure: str | None
    force: bool

    @property
    def kind(self) -> str:
        return f"figure {self.figure}" if self.figure else str(self.format)

    @staticmethod
    def of(path: Path, fmt: str | None, figure: str | None, force: bool) -> Target:
        if figure is not None:
            if fmt is not None:
                raise UsageError("--format: not with --figure (the file's suffix, .svg or .png, says the format)")
            if figure not in FIGURES:
                raise UsageError(f"--figure = {figure!r}: one of {', '.join(FIGURES)}")
            if path.suffix.lower() not in FIGURE_SUFFIXES:
                raise UsageError(f"--out = {path}: a figure is written to a .svg or .png file")
            chosen = None
        elif fmt is None:
            chosen = SUFFIXES.get(path.suffix.lower(), Format.HTML)
        else:
            try:
                chosen = Format(fmt)
            except ValueError:
                raise UsageError(f"--format = {fmt!r}: one of {', '.join(f.value for f in Format)}") from None
        check_replaceable(path, force)
        return Target(path, chosen, figure, force)


def written_by_us(path: Path) -> bool:
    """True when the file at ``path`` carries :data:`MARKER` near its start (a report or figure we wrote)."""
    try:
        with path.open("rb") as f:
            head = f.read(MARKER_REACH_BYTES)
    except OSError:
        return False
    return MARKER.encode() in head


def check_replaceable(path: Path, force: bool) -> None:
    """One line, exit 2, unless ``path`` is free, or a file clonefleet report wrote and ``force`` is given."""
    if path.is_dir():
        raise UsageError(f"--out {path}: is a folder; give a file name inside it, e.g. {path / 'report.html'}")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UsageError(f"--out {path}: is not a regular file; give the name of a new file")
    if path.exists():
        if not force:
            raise UsageError(f"--out {path}: exists; pass --force to replace it")
        if not written_by_us(path):
            raise UsageError(f"--out {path}: exists and clonefleet report did not write it; not replaced, even "
                             "with --force: give another name")
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: no folder {path.parent}; create it first")


def write_whole(path: Path, data: bytes, force: bool) -> None:
    """``data`` to ``path`` whole or not at all, replacing only a file the report wrote (checked again
    just before)."""
    check_replaceable(path, force)
    write_bytes_whole(path, data, "--out", force=True)


def write(report: Report, target: Target) -> Path:
    """Render ``report`` as ``target`` asks and write it; the path written."""
    if target.figure is not None:
        found = [f for f in figures_of_report(report) if f.key == target.figure]
        if not found:
            raise UsageError(f"--figure {target.figure}: this report has no such figure (comparison needs a "
                             "manifest with a fio storm that can be compared)")
        data = figure_bytes(found[0].figure(), target.path.suffix)
    else:
        assert target.format is not None
        data = render(report, target.format).encode("utf-8")
    write_whole(target.path, data, target.force)
    return target.path


__all__ = ["FIGURES", "Target", "check_replaceable", "write", "written_by_us"]
