"""ext4 filesystem images, built and read without mounting (e2fsprogs: mkfs.ext4, dumpe2fs, debugfs).

- :func:`ext4_env` and :func:`make_ext4`: a filesystem image from a folder (``mkfs.ext4 -d``), with our
  own ``mke2fs.conf``, a fixed clock, UUID and directory hash seed, so the host's configuration and
  the time of day do not change the result;
- :func:`ext4_used_bytes`: bytes of the blocks the filesystem uses;
- :func:`dump_file` and :func:`list_dir`: read a file or a folder of the image (``debugfs``);
- :func:`files_of_blocks`: which file each filesystem block belongs to (``icheck`` then ``ncheck``),
  the way to check that a block trace's reads really are the files a boot loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from clonefleet.errors import ClonefleetError
from clonefleet.storage.tools import run_tool, run_tool_result

FS_BLOCK_BYTES = 4096
#: Every time in a built image (2023-11-14 22:13:20 UTC).
FIXED_EPOCH_S = 1_700_000_000

# Our own mke2fs.conf: the features of Debian's ext4 defaults, written out so a host
# with another /etc/mke2fs.conf builds the same filesystem.
MKE2FS_CONF = """[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
"""


def ext4_env(work: Path) -> dict[str, str]:
    """The environment of e2fsprogs for a reproducible build: ``work/mke2fs.conf``, a fixed clock."""
    conf = work / "mke2fs.conf"
    conf.write_text(MKE2FS_CONF)
    env = dict(os.environ)
    env.update(MKE2FS_CONFIG=str(conf), E2FSPROGS_FAKE_TIME=str(FIXED_EPOCH_S),
               SOURCE_DATE_EPOCH=str(FIXED_EPOCH_S), TZ="UTC", LC_ALL="C")
    return env


def make_ext4(raw: Path, tree: Path, *, size_bytes: int, label: str, fs_uuid: str, hash_seed: str,
              env: dict[str, str]) -> None:
    """Write a new sparse file ``raw`` of ``size_bytes`` holding an ext4 filesystem with ``tree``'s files."""
    with open(raw, "xb") as f:
        f.truncate(size_bytes)
    run_tool(["mkfs.ext4", "-q", "-F", "-t", "ext4", "-b", str(FS_BLOCK_BYTES), "-L", label, "-U", fs_uuid,
              "-E", f"hash_seed={hash_seed},root_owner=0:0,nodiscard", "-d", str(tree), str(raw)], env=env)


def ext4_used_bytes(raw: Path) -> int:
    """Bytes of the blocks the filesystem in ``raw`` uses (block count - free blocks, from dumpe2fs)."""
    fields: dict[str, int] = {}
    for line in run_tool(["dumpe2fs", "-h", str(raw)]).splitlines():
        key, _, value = line.partition(":")
        if key in ("Block count", "Free blocks", "Block size"):
            fields[key] = int(value.strip())
    return (fields["Block count"] - fields["Free blocks"]) * fields["Block size"]


def _debugfs(raw: Path, request: str) -> tuple[str, str]:
    """Run one read-only debugfs request; its errors (debugfs exits 0 anyway) as one line."""
    result = run_tool_result(["debugfs", "-R", request, str(raw)])
    errors = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("debugfs ")]
    return result.stdout, errors[0] if errors else ""


def dump_file(raw: Path, inside: str, dest: Path) -> None:
    """Copy the file ``inside`` (absolute path in the filesystem) out of the image ``raw`` to ``dest``."""
    _, error = _debugfs(raw, f"dump {inside} {dest}")
    if error or not dest.exists():
        raise ClonefleetError(f"cannot read '{inside}' from the image '{raw}': {error or 'no such file'}")


def list_dir(raw: Path, inside: str) -> list[str]:
    """Names in the folder ``inside`` of the image ``raw`` (``.`` and ``..`` left out)."""
    out, error = _debugfs(raw, f"ls -p {inside}")
    if error:
        raise ClonefleetError(f"cannot list '{inside}' in the image '{raw}': {error}")
    names = []
    for line in out.splitlines():  # /inode/mode/uid/gid/name/size/
        parts = line.strip().split("/")
        if len(parts) >= 6 and parts[5] not in ("", ".", ".."):
            names.append(parts[5])
    return names


def files_of_blocks(raw: Path, blocks: Iterable[int]) -> dict[int, str]:
    """The path of the file (or folder) each filesystem block belongs to; blocks of no inode
    (superblock, bitmaps, inode tables, journal blocks without a path, free blocks) are left out."""
    wanted = sorted(set(blocks))
    if not wanted:
        return {}
    out, _ = _debugfs(raw, "icheck " + " ".join(map(str, wanted)))
    inode_of: dict[int, int] = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+)\s+(\d+)\s*$", line)
        if m:
            inode_of[int(m.group(1))] = int(m.group(2))
    if not inode_of:
        return {}
    out, _ = _debugfs(raw, "ncheck " + " ".join(map(str, sorted(set(inode_of.values())))))
    path_of: dict[int, str] = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+)\s+(/.*)$", line)
        if m:
            path_of.setdefault(int(m.group(1)), m.group(2))
    return {b: path_of[i] for b, i in inode_of.items() if i in path_of}
