"""Write a boot's write footprint into a clone, so measured consumption can be held
against the model's C (Eq. 3).

The extents come from :func:`boot_footprint` (the same draw as
:func:`clonefleet.model.footprint.write_extents`, so the model, the simulator and
the real backends see one kind of footprint) or from a caller's list of
``(offset, length)``, for instance from a trace. The data written is real and
non-zero, so every backend must allocate it:

- :func:`write_extents_qcow2`: one ``qemu-io`` process per image, one
  ``write -P <pattern> <offset> <length>`` per extent fed on stdin (no argument
  list limit), each pattern a byte in 1..255 from the seed; qcow2 allocates whole
  clusters at depth 0 (copy-on-write from the backing file for partial ones).
- :func:`write_extents_file`: ``os.pwrite`` of seeded random bytes into a raw or
  reflink file, then ``fsync``; a reflink clone unshares exactly the blocks written.

Writes never touch a golden image: the target is refused when it is the same
inode as any path in ``protected`` (hard links and symlinks included), when its
mode has no write bit (``build_golden_image`` makes GIs 0444; root would write
them anyway), and, for qcow2, qemu's own image locking refuses an image another
qemu process holds as a backing file. :func:`backing_files` lists the files a
set of qcow2 clones depend on, to pass as ``protected``.

Where in the guest the writes land is up to the caller (``span_start_bytes``):
they overwrite whatever the GI's filesystem had there, which is fine for capacity
measurement and not for booting the clone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.model import footprint
from clonefleet.storage.measure import union_bytes
from clonefleet.storage.qcow2 import qcow2_info, read_header
from clonefleet.storage.tools import first_error_line, run_tool

IntArray = npt.NDArray[np.int64]
ExtentInput = Sequence[int] | npt.NDArray[np.integer]

MAX_COMMAND_BYTES = 16 * 1024**2  # one qemu-io write command: a longer extent is split
_FILE_CHUNK_BYTES = 8 * 1024**2


@dataclass(frozen=True)
class Footprint:
    """One boot's writes: ``lengths_bytes[i]`` bytes at ``offsets_bytes[i]``, drawn with ``seed``."""

    offsets_bytes: IntArray
    lengths_bytes: IntArray
    seed: int

    @property
    def written_bytes(self) -> int:
        return int(self.lengths_bytes.sum())


@dataclass(frozen=True)
class WriteReport:
    """What one call wrote into one target."""

    path: Path
    extent_count: int
    written_bytes: int  # sum of the extent lengths (a rewrite counts each time)
    distinct_bytes: int  # union of the extents: bytes of the target that now hold new data
    seed: int


def boot_footprint(
    write_bytes: float,
    write_extents: float,
    span_bytes: float,
    seed: int,
    span_start_bytes: int = 0,
    align_bytes: int = footprint.DEFAULT_ALIGN_BYTES,
) -> Footprint:
    """Draw a boot's extents (W = ``write_bytes``, n = ``write_extents``, R = ``span_bytes``)
    with ``numpy.random.default_rng(seed)``: see :func:`clonefleet.model.footprint.write_extents`.
    A day's writes of the growth model are the same draw with W_day, n_day and R_day."""
    rng = np.random.default_rng(seed)
    offsets, lengths = footprint.write_extents(
        write_bytes, write_extents, span_bytes, rng,
        span_start_bytes=span_start_bytes, align_bytes=align_bytes,
    )
    return Footprint(offsets, lengths, seed)


def _whole_bytes(values: ExtentInput, what: str) -> IntArray:
    try:
        arr = np.asarray(values).reshape(-1)
        whole = arr.dtype.kind in "iu" or (
            arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr) & (arr == np.floor(arr))))
        )
        if not whole and arr.size:
            raise ValueError(what)
        return arr.astype(np.int64)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"write extents: {what} must be whole numbers of bytes") from None


def validate_extents(
    offsets: ExtentInput, lengths: ExtentInput, limit_bytes: int, target: Path
) -> tuple[IntArray, IntArray]:
    """Extents as int64 arrays; each must have offset >= 0, length > 0 and end inside
    ``limit_bytes`` (the target's size). Raises :class:`UsageError` naming the first bad one."""
    off = _whole_bytes(offsets, "offsets")
    ln = _whole_bytes(lengths, "lengths")
    if off.shape != ln.shape:
        raise UsageError(
            f"write extents: {off.size} offsets but {ln.size} lengths: give one length per offset"
        )
    bad = np.flatnonzero((off < 0) | (ln <= 0) | (off + ln > limit_bytes))
    if bad.size:
        i = int(bad[0])
        raise UsageError(
            f"write extent {i} (offset {int(off[i])}, length {int(ln[i])} bytes) into '{target}': "
            f"offset >= 0, length > 0 and end <= the target's {limit_bytes} bytes"
        )
    return off, ln


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def check_not_protected(target: Path, st: os.stat_result, protected: Collection[Path]) -> None:
    """Refuse a target that is a golden image: same inode as a protected path, or read-only.

    ``st`` is the target's ``stat`` (take it from the open file descriptor where there
    is one, so the check applies to what is written).
    """
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"write target '{target}' is not a regular file")
    for p in protected:
        try:
            pst = os.stat(p)
        except FileNotFoundError:
            continue
        if _identity(pst) == _identity(st):
            raise UsageError(
                f"write target '{target}' is the protected golden image '{p}' (same inode): "
                "writes go into clones only"
            )
    if not st.st_mode & 0o222:
        raise UsageError(
            f"write target '{target}' is read-only (mode {stat.S_IMODE(st.st_mode):o}), as "
            "golden images are: writes go into writable clones only"
        )


def backing_files(images: Iterable[Path]) -> set[Path]:
    """Every file the given qcow2 images use as their backing file: pass it as
    ``protected`` so no write lands in a file that clones depend on."""
    found = set()
    for image in images:
        header = read_header(image)
        backing = header.backing_path(image) if header is not None else None
        if backing is not None:
            found.add(backing)
    return found


def _target_stat(target: Path) -> os.stat_result:
    try:
        return os.stat(target)
    except FileNotFoundError:
        raise UsageError(f"write target '{target}' does not exist: create the clone first") from None


def qemu_io_script(
    offsets: IntArray, lengths: IntArray, seed: int, max_command_bytes: int = MAX_COMMAND_BYTES
) -> list[str]:
    """The ``qemu-io`` commands: ``write -P <pattern> <offset> <length>`` per extent (long
    extents split into pieces of at most ``max_command_bytes``), patterns 1..255 from
    ``seed``. Pure."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(1, 256, size=offsets.size)
    commands = []
    for off, ln, pat in zip(offsets.tolist(), lengths.tolist(), patterns.tolist(), strict=True):
        for start in range(off, off + ln, max_command_bytes):
            piece = min(max_command_bytes, off + ln - start)
            commands.append(f"write -P {pat} {start} {piece}")
    return commands


def _strip_prompts(line: str) -> str:
    while line.startswith("qemu-io> "):
        line = line[len("qemu-io> ") :]
    return line


def write_extents_qcow2(
    image: Path,
    offsets: ExtentInput,
    lengths: ExtentInput,
    seed: int,
    protected: Collection[Path] = (),
) -> WriteReport:
    """Write every extent into a qcow2 image with ONE ``qemu-io`` process.

    Refuses a protected or read-only image (see the module docstring) and extents
    outside the virtual size. A ``qemu-io`` failure (for instance the image is
    locked by a running qemu) raises :class:`ClonefleetError` with qemu-io's line.
    """
    image = Path(image)
    check_not_protected(image, _target_stat(image), protected)
    info = qcow2_info(image)  # probed on purpose: a raw target gets a clear refusal
    if info.format != "qcow2":
        raise UsageError(f"write target '{image}' is a {info.format} image: expected qcow2")
    off, ln = validate_extents(offsets, lengths, info.virtual_bytes, image)
    commands = qemu_io_script(off, ln, seed)
    if commands:
        script = "\n".join([*commands, "flush", "quit"]) + "\n"
        out = run_tool(["qemu-io", "-f", "qcow2", str(image)], stdin_text=script)
        lines = [_strip_prompts(line) for line in out.splitlines()]
        done = sum(1 for line in lines if line.startswith("wrote "))
        if done != len(commands):
            problems = "\n".join(line for line in lines if "fail" in line or "rror" in line)
            raise ClonefleetError(
                f"qemu-io wrote {done} of {len(commands)} extents into '{image}': "
                f"{first_error_line(problems, out)}"
            )
    return WriteReport(image, int(off.size), int(ln.sum()), union_bytes(off, ln), seed)


def _pwrite_all(fd: int, data: bytes, offset: int, path: Path) -> None:
    view = memoryview(data)
    while view:
        try:
            done = os.pwrite(fd, view, offset)
        except OSError as exc:
            raise ClonefleetError(
                f"writing '{path}' at offset {offset} failed: {exc.strerror}"
            ) from None
        view = view[done:]
        offset += done


def seeded_chunks(offsets: ExtentInput, lengths: ExtentInput, seed: int,
                  chunk_bytes: int = _FILE_CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """The data of a footprint, as ``(offset, bytes)`` chunks of at most ``chunk_bytes``: seeded random
    bytes drawn in order, so the same footprint and seed give the same bytes, and memory holds one chunk
    however large an extent is (a pagefile is gigabytes)."""
    rng = np.random.default_rng(seed)
    for o, n in zip(np.asarray(offsets).tolist(), np.asarray(lengths).tolist(), strict=True):
        for start in range(int(o), int(o) + int(n), chunk_bytes):
            yield start, rng.bytes(min(chunk_bytes, int(o) + int(n) - start))


def write_extents_file(
    path: Path,
    offsets: ExtentInput,
    lengths: ExtentInput,
    seed: int,
    protected: Collection[Path] = (),
) -> WriteReport:
    """``os.pwrite`` seeded random bytes at every extent of an existing raw or reflink
    file, then ``fsync``. Never extends the file; refuses a protected or read-only one.

    The checks run on the opened descriptor, so a path swapped in between cannot
    redirect the writes to a golden image.
    """
    path = Path(path)
    _target_stat(path)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        check_not_protected(path, st, protected)
        off, ln = validate_extents(offsets, lengths, st.st_size, path)
        for start, data in seeded_chunks(off, ln, seed):
            _pwrite_all(fd, data, start, path)
        try:
            os.fsync(fd)
        except OSError as exc:
            raise ClonefleetError(f"fsync of '{path}' failed: {exc.strerror}") from None
    finally:
        os.close(fd)
    return WriteReport(path, int(off.size), int(ln.sum()), union_bytes(off, ln), seed)
