"""Output files that appear whole or not at all.

A report writes each file to a hidden temporary beside it, in the same folder (so
the rename stays on one filesystem), and renames the temporaries over the final
names only when every file has been written. A crash, a full disk or a bug half way
leaves the folder as it was: no truncated CSV, no JSON without its CSV.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

from clonefleet.errors import ClonefleetError, output_folder


def _reserve(folder: Path, name: str) -> Path:
    """Create an empty, hidden temporary for ``name`` in ``folder``, keeping its suffix (plotters read it)."""
    final = Path(name)
    temp = folder / f".{final.stem}.{secrets.token_hex(6)}.tmp{final.suffix}"
    # O_EXCL: never reuse a path someone else made; mode 0o666 so the umask applies as to any new file.
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
    return temp


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_outputs(folder: Path, names: Sequence[str], flag: str = "--out") -> Iterator[dict[str, Path]]:
    """Paths to write ``names`` to; on a clean exit they are renamed to ``folder/name``, else removed.

    ``folder`` is created if needed (or refused as the value of ``flag``). Each final file is
    replaced atomically; the renames come after every file is written and flushed.
    """
    out = output_folder(folder, flag)
    staged: dict[str, Path] = {}
    try:
        try:
            for name in names:
                staged[name] = _reserve(out, name)
        except OSError as exc:
            raise ClonefleetError(f"{flag} = '{out}': cannot create a file there ({exc.strerror})") from None
        yield dict(staged)
        try:
            for temp in staged.values():
                _fsync(temp)
            for name in list(staged):
                os.replace(staged[name], out / name)
                del staged[name]
            _fsync(out, directory=True)
        except OSError as exc:
            raise ClonefleetError(f"{flag} = '{out}': cannot write the output files ({exc.strerror})") from None
    finally:
        for temp in staged.values():
            temp.unlink(missing_ok=True)


__all__ = ["staged_outputs"]
