"""qcow2 images: the one header parser, and ``qemu-img info``, ``check``, ``map`` and ``create``.

The header is read directly (no process), so it is cheap over a whole fleet; everything else goes
through :mod:`clonefleet.storage.tools` (timeouts, one-line errors). ``-U`` lets qemu-img read an
image another process holds open; give ``fmt`` when the format is known, so qemu-img does not
probe it (a raw image whose guest wrote a qcow2 header would otherwise be read as qcow2).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from clonefleet.storage.files import existing_file
from clonefleet.storage.tools import DEFAULT_TIMEOUT_S, first_error_line, run_tool, run_tool_result

QCOW2_MAGIC = b"QFI\xfb"
# magic, version, backing_file_offset, backing_file_size, cluster_bits, size
_HEADER = struct.Struct(">4sIQIIQ")
_MAX_BACKING_NAME = 1023  # qemu's own limit on the backing file name


@dataclass(frozen=True)
class Qcow2Header:
    """What a qcow2 header says."""

    cluster_bytes: int
    backing_file: str | None  # as stored: absolute or relative to the image's folder
    virtual_bytes: int

    def backing_path(self, image: Path) -> Path | None:
        """The backing file as a path (a relative name taken from the image's folder), None if none."""
        if self.backing_file is None:
            return None
        return Path(os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(image)), self.backing_file)))


def read_header(path: Path) -> Qcow2Header | None:
    """The header of a qcow2 image; None for a file that is not qcow2 (or too short to be one)."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None
        magic, _version, backing_offset, backing_len, cluster_bits, size = _HEADER.unpack(head)
        if magic != QCOW2_MAGIC or not 9 <= cluster_bits <= 21:
            return None
        backing = None
        if backing_offset and backing_len:
            f.seek(backing_offset)
            backing = f.read(min(backing_len, _MAX_BACKING_NAME)).decode("utf-8", "replace")
        return Qcow2Header(1 << cluster_bits, backing, size)


def has_qcow2_magic(fd: int) -> bool:
    """True when the open file starts with the qcow2 magic."""
    return os.pread(fd, len(QCOW2_MAGIC), 0) == QCOW2_MAGIC


def _format_args(fmt: str | None) -> list[str]:
    return [] if fmt is None else ["-f", fmt]


@dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says about one image file."""

    path: Path
    format: str
    virtual_bytes: int
    actual_bytes: int  # bytes the image file takes on the host (st_blocks), shared blocks included
    cluster_bytes: int | None  # None for formats without clusters (raw)
    backing_file: str | None  # as stored in the image: absolute or relative on purpose
    backing_format: str | None


def _image_info(data: dict[str, object], path: Path) -> ImageInfo:
    def whole(key: str, default: int = 0) -> int:
        value = data.get(key, default)
        return int(value) if isinstance(value, int | str) else default

    backing, backing_fmt = data.get("backing-filename"), data.get("backing-filename-format")
    return ImageInfo(path=path, format=str(data["format"]), virtual_bytes=whole("virtual-size"),
                     actual_bytes=whole("actual-size"),
                     cluster_bytes=whole("cluster-size") if "cluster-size" in data else None,
                     backing_file=str(backing) if backing is not None else None,
                     backing_format=str(backing_fmt) if backing_fmt is not None else None)


def qcow2_info(path: Path, fmt: str | None = None) -> ImageInfo:
    """``qemu-img info -U --output=json`` of one image, read-only."""
    path = existing_file(path, "image")
    data = json.loads(run_tool(["qemu-img", "info", "-U", *_format_args(fmt), "--output=json", str(path)]))
    return _image_info(data, path)


def qcow2_actual_bytes(path: Path, fmt: str | None = None) -> int:
    """Bytes the image file takes on the host (``actual-size``): for a fresh linked clone
    only its metadata (about 196 KiB with 64 KiB clusters)."""
    return qcow2_info(path, fmt).actual_bytes


def image_chain(path: Path, fmt: str | None = None) -> list[ImageInfo]:
    """``qemu-img info --backing-chain`` of an image: the image first, then each backing file.
    Raises :class:`~clonefleet.storage.tools.ToolError` when qemu-img cannot read it."""
    out = run_tool(["qemu-img", "info", "-U", "--backing-chain", *_format_args(fmt), "--output=json", str(path)])
    chain = json.loads(out)
    return [_image_info(d, Path(str(d.get("filename", path)))) for d in (chain if isinstance(chain, list) else [chain])]


def check_image(path: Path, fmt: str = "qcow2", timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """``qemu-img check``: None when the image is consistent (leaked clusters only are harmless),
    else qemu-img's first error line."""
    result = run_tool_result(["qemu-img", "check", "-U", "-q", "-f", fmt, str(path)], timeout_s=timeout_s,
                             check=False)
    if result.returncode in (0, 3):  # 0: clean; 3: leaked clusters only
        return None
    return first_error_line(result.stderr, result.stdout) if (result.stderr or result.stdout) \
        else f"exit {result.returncode}"


@dataclass(frozen=True)
class Qcow2Allocation:
    """Where an image's guest-visible bytes come from, by backing-chain depth.

    ``own_data_bytes`` is the clone's own data (depth 0): what its writes allocated,
    the C of Eq. 3. ``backing_data_bytes`` is data read through from the backing
    chain (depth >= 1): shared with every other clone of that GI.
    """

    path: Path
    virtual_bytes: int
    own_data_bytes: int  # depth 0, data
    own_zero_bytes: int  # depth 0, allocated as zero (no data stored)
    backing_data_bytes: int  # depth >= 1, data
    unallocated_bytes: int  # nowhere in the chain: reads as zeros
    data_bytes_by_depth: tuple[int, ...]  # index = depth


def qcow2_allocation(path: Path, fmt: str | None = None) -> Qcow2Allocation:
    """Sum ``qemu-img map -U --output=json`` by depth.

    Ranges with ``data`` true are data; at depth 0 a range that is ``present`` without
    data is zero clusters; anything else is unallocated (a qemu-img older than 6.0,
    without ``present``, shows zero clusters as unallocated).
    """
    path = existing_file(path, "image")
    entries = json.loads(run_tool(["qemu-img", "map", "-U", *_format_args(fmt), "--output=json", str(path)]))
    by_depth: dict[int, int] = {}
    own_zero = unallocated = virtual = 0
    for entry in entries:
        length = int(entry["length"])
        depth = int(entry["depth"])
        virtual = max(virtual, int(entry["start"]) + length)
        if entry.get("data"):
            by_depth[depth] = by_depth.get(depth, 0) + length
        elif depth == 0 and entry.get("present", False):
            own_zero += length
        else:
            unallocated += length
    depths = tuple(by_depth.get(d, 0) for d in range(max(by_depth, default=-1) + 1))
    own = by_depth.get(0, 0)
    return Qcow2Allocation(path=path, virtual_bytes=virtual, own_data_bytes=own, own_zero_bytes=own_zero,
                           backing_data_bytes=sum(depths) - own, unallocated_bytes=unallocated,
                           data_bytes_by_depth=depths)


def create_overlay(dest: Path, backing: Path, backing_fmt: str, cluster_bytes: int) -> None:
    """``qemu-img create -f qcow2 -F <fmt> -b <backing>``: a linked clone (the backing path stored as given)."""
    run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_fmt, "-b", str(backing),
              "-o", f"cluster_size={cluster_bytes}", str(dest)])
