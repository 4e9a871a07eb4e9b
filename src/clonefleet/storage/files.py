"""Input files read safely: a regular file, of bounded size, or one clear line.

A trace, a preset, a manifest or a writes source that turns out to be a FIFO, a
device (``/dev/zero``), a socket or a directory is refused before a byte is read,
so no command ever blocks on a pipe or reads an endless device until memory runs
out. The check is made on the descriptor that is then read (``fstat`` after an
``O_NONBLOCK`` open), so a file swapped between check and read cannot slip by.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from clonefleet.errors import UsageError

#: Largest text input (preset, manifest) read whole into memory.
MAX_TEXT_BYTES = 16 << 20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path, what: str) -> int:
    """A read-only descriptor of ``path`` if it is a regular file; else a one-line :class:`UsageError`.

    ``what`` names the input in the message (``"trace"``, ``"fleet preset 'x.toml'"``). The open
    never blocks (``O_NONBLOCK``: a FIFO without a writer would), and the type is checked on the
    descriptor itself. The caller closes the descriptor (``os.fdopen`` takes it over).
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise UsageError(f"{what} {text!r}: contains a NUL byte; give the path of a regular file")
    try:
        fd = os.open(text, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise UsageError(f"{what} '{text}': does not exist; give the path of a regular file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} '{text}': is a directory; give the path of a regular file") from None
    except OSError as exc:
        raise UsageError(f"{what} '{text}': cannot be opened ({exc.strerror}); give a readable regular file") \
            from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UsageError(f"{what} '{text}': is {_kind(mode)}; give the path of a regular file")
    os.set_blocking(fd, True)
    return fd


def read_regular_bytes(path: str | Path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The whole content of a regular file of at most ``max_bytes``; anything else is refused."""
    fd = open_regular(path, what)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UsageError(f"{what} '{os.fspath(path)}': larger than {max_bytes >> 20} MiB; "
                         "a text input of that size is not a preset or manifest")
    return data


def read_regular_text(path: str | Path, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """As :func:`read_regular_bytes`, decoded as UTF-8 (a one-line error if it is not)."""
    data = read_regular_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} '{os.fspath(path)}': not UTF-8 text (byte {exc.start}); give a UTF-8 file") \
            from None


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` if it names an existing regular file (links followed); else a one-line :class:`UsageError`."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} '{p}' is not an existing regular file")
    return p


def refuse_to_replace(path: Path, what: str, *, force: bool = False) -> None:
    """Refuse, in one line, a file to write that is a folder, or that exists and ``force`` is not given:
    called by :func:`write_text_whole`, and by a command first, before any work that would be lost."""
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a folder; give a file name inside it")
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(f"{what} {path}: exists; pass --force to overwrite it")


def write_text_whole(path: Path, text: str, what: str, *, force: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (:func:`write_bytes_whole`)."""
    write_bytes_whole(path, text.encode("utf-8"), what, force=force)


def write_bytes_whole(path: Path, data: bytes, what: str, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary beside it, synced, renamed: the file appears whole
    or not at all. An existing file is replaced only with ``force``; a folder, an unwritable place or a
    full disk is one line (:class:`UsageError`) naming ``what`` and the reason, and no temporary is
    left behind."""
    refuse_to_replace(path, what, force=force)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(path)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot be written ({exc.strerror or exc}); give a writable place") \
            from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def publish_new(built: Path, target: Path, what: str) -> None:
    """Give the finished file ``built`` its name ``target`` without ever replacing a file that
    appeared meanwhile: a hard link fails if the name exists (the caller removes ``built`` with its
    temporary folder); where hard links are not supported, a check and a rename."""
    try:
        os.link(built, target)
    except FileExistsError:
        raise UsageError(f"{what} '{target}' appeared while it was being built: not replaced") from None
    except OSError:
        if target.exists() or target.is_symlink():
            raise UsageError(f"{what} '{target}' appeared while it was being built: not replaced") from None
        os.rename(built, target)
