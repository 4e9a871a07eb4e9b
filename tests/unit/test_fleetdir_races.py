"""A file swapped in under a clone's name between clonefleet's check and its change is never the one
removed or replaced: the change is made first on a name nobody else uses (renamed aside, or swapped
in one step with RENAME_EXCHANGE), checked there, and undone when the file is not clonefleet's. The
race tests put a user's file under the name right after the check: the code before (a check, then
unlink or rename by name) removed or replaced it."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clonefleet.errors import UsageError
from clonefleet.provision import fleetdir
from clonefleet.storage import paths
from clonefleet.storage.paths import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RenameUnsupported,
    open_dir,
    path_identity,
    rename_at,
)

CLONE = b"the clone clonefleet made"
NEW = b"the refreshed clone"
STRANGER = b"a user's own file"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(fleet directory with vm-0001.img, clonefleet's, in it; the private folder)."""
    private = tmp_path / ".clonefleet" / "tmp"
    private.mkdir(parents=True)
    (tmp_path / "vm-0001.img").write_bytes(CLONE)
    yield tmp_path, private


def _swap_in_a_stranger_after_the_check(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """The first check of ``path``'s name answers as it finds it, then a user's file takes the name
    (a user's mv, between clonefleet's check and its change)."""
    real = fleetdir._ours
    swapped = []

    def ours_then_swap(dir_fd: int, name: str, recorded: fleetdir.FileId) -> bool:
        answer = real(dir_fd, name, recorded)
        if name == path.name and not swapped:
            swapped.append(True)
            beside = path.with_name("stranger.new")
            beside.write_bytes(STRANGER)
            os.rename(beside, path)
        return answer

    monkeypatch.setattr(fleetdir, "_ours", ours_then_swap)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".clonefleet-" in p.name)


def test_remove_ours_removes_the_clone_and_leaves_nothing_aside(fleet: tuple[Path, Path]) -> None:
    fleet_dir, _ = fleet
    ident = path_identity(fleet_dir / "vm-0001.img")
    assert fleetdir.remove_ours(fleet_dir, "vm-0001.img", ident)
    assert not (fleet_dir / "vm-0001.img").exists()
    assert _leftovers(fleet_dir) == []


def test_remove_ours_never_removes_a_file_swapped_in_after_the_check(fleet: tuple[Path, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fleet_dir, _ = fleet
    clone = fleet_dir / "vm-0001.img"
    ident = path_identity(clone)
    _swap_in_a_stranger_after_the_check(monkeypatch, clone)
    assert not fleetdir.remove_ours(fleet_dir, "vm-0001.img", ident)
    assert clone.read_bytes() == STRANGER  # put back under its name
    assert _leftovers(fleet_dir) == []


def test_replace_ours_replaces_the_clone_and_drops_the_old_one(fleet: tuple[Path, Path]) -> None:
    fleet_dir, private = fleet
    ident = path_identity(fleet_dir / "vm-0001.img")
    tmp = private / "123.vm-0001.img"
    tmp.write_bytes(NEW)
    new_ident = path_identity(tmp)
    fleetdir.replace_ours(tmp, fleet_dir, "vm-0001.img", ident)
    assert (fleet_dir / "vm-0001.img").read_bytes() == NEW
    assert path_identity(fleet_dir / "vm-0001.img") == new_ident  # the temporary itself, renamed
    assert list(private.iterdir()) == []  # the old clone is gone, not parked


def test_replace_ours_never_replaces_a_file_swapped_in_after_the_check(fleet: tuple[Path, Path],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fleet_dir, private = fleet
    clone = fleet_dir / "vm-0001.img"
    ident = path_identity(clone)
    tmp = private / "123.vm-0001.img"
    tmp.write_bytes(NEW)
    _swap_in_a_stranger_after_the_check(monkeypatch, clone)
    with pytest.raises(UsageError, match="vm-0001.img: is not the clone clonefleet made"):
        fleetdir.replace_ours(tmp, fleet_dir, "vm-0001.img", ident)
    assert clone.read_bytes() == STRANGER  # swapped back at once
    assert [p.read_bytes() for p in private.iterdir()] == [NEW]  # only the refreshed clone, waiting there
    assert _leftovers(fleet_dir) == []


def test_replace_ours_refuses_a_stranger_found_at_the_check_and_moves_nothing(fleet: tuple[Path, Path]) -> None:
    fleet_dir, private = fleet
    clone = fleet_dir / "vm-0001.img"
    ident = path_identity(clone)
    os.unlink(clone)
    clone.write_bytes(STRANGER)
    tmp = private / "123.vm-0001.img"
    tmp.write_bytes(NEW)
    with pytest.raises(UsageError, match="vm-0001.img: is not the clone clonefleet made"):
        fleetdir.replace_ours(tmp, fleet_dir, "vm-0001.img", ident)
    assert clone.read_bytes() == STRANGER and tmp.read_bytes() == NEW
    assert _leftovers(fleet_dir) == []


def test_a_filesystem_without_renameat2_flags_falls_back_to_check_then_change(
        fleet: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    fleet_dir, private = fleet

    def unsupported(*_: object) -> None:
        raise RenameUnsupported(22, "Invalid argument")

    monkeypatch.setattr(fleetdir, "rename_at", unsupported)
    ident = path_identity(fleet_dir / "vm-0001.img")
    tmp = private / "123.vm-0001.img"
    tmp.write_bytes(NEW)
    fleetdir.replace_ours(tmp, fleet_dir, "vm-0001.img", ident)
    assert (fleet_dir / "vm-0001.img").read_bytes() == NEW
    assert fleetdir.remove_ours(fleet_dir, "vm-0001.img", path_identity(fleet_dir / "vm-0001.img"))
    assert not (fleet_dir / "vm-0001.img").exists()


def test_rename_at_never_replaces_with_noreplace_and_swaps_with_exchange(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"A")
    (tmp_path / "b").write_bytes(b"B")
    fd = open_dir(tmp_path)
    try:
        with pytest.raises(FileExistsError):
            rename_at(fd, "a", fd, "b", RENAME_NOREPLACE)
        assert (tmp_path / "b").read_bytes() == b"B"
        rename_at(fd, "a", fd, "b", RENAME_EXCHANGE)
        assert ((tmp_path / "a").read_bytes(), (tmp_path / "b").read_bytes()) == (b"B", b"A")
        rename_at(fd, "a", fd, "c", RENAME_NOREPLACE)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]
    finally:
        os.close(fd)


class _Libc:
    """A C library whose renameat2 fails with ``code`` (or has none: ``code`` None)."""

    def __init__(self, code: int | None) -> None:
        if code is not None:
            def renameat2(*_: object) -> int:
                ctypes.set_errno(code)
                return -1

            self.renameat2 = renameat2


@pytest.mark.parametrize(("code", "raised"), [(errno.EINVAL, RenameUnsupported), (errno.ENOSYS, RenameUnsupported),
                                             (errno.EOPNOTSUPP, RenameUnsupported), (None, RenameUnsupported),
                                             (errno.EACCES, PermissionError)])
def test_rename_at_says_unsupported_where_the_filesystem_or_library_has_no_such_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int | None, raised: type[OSError]) -> None:
    """No such rename (EINVAL, ENOSYS, EOPNOTSUPP, no renameat2 at all): RenameUnsupported, which
    the callers meet with the plain path; any other error is passed on as os.rename would raise it."""
    monkeypatch.setattr(paths, "_LIBC", _Libc(code))
    fd = open_dir(tmp_path)
    try:
        with pytest.raises(raised) as caught:
            rename_at(fd, "a", fd, "b", RENAME_NOREPLACE)
        assert isinstance(caught.value, RenameUnsupported) == (raised is RenameUnsupported)
    finally:
        os.close(fd)
