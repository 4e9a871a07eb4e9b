"""The guards of issue 8, each a mechanism with a test that failed before it existed: the fleet
directory resolved before it is checked, nothing removed that clonefleet did not make (journal
records with identities), a GI changed during a run or since, a GI that is no image file, the
free space checked against the plan, and no external tool left running."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import clonefleet.provision as engine
from clonefleet.backends import Prepared, Recipe
from clonefleet.backends.fake import FakeBackend
from clonefleet.errors import UsageError
from clonefleet.provision.manifest import Manifest, build_manifest
from clonefleet.storage import tools
from clonefleet.storage.paths import check_fleet_dir
from fakes import fake_backend, make_fleet
from helpers import mounted

pytestmark = pytest.mark.usefixtures("fake_backend")
__all__ = ["fake_backend"]


# --- the fleet directory ------------------------------------------------------------------------


@pytest.mark.parametrize("dest", ["//boot", "/boot", "/tmp/../etc", "/usr/lib/x", "/lib64/fleet", "/", "/var",
                                  "/root", "/run/fleet", "/dev/shm/fleet", "//etc/../usr//"])
def test_system_directories_are_refused_however_they_are_spelt(dest: str) -> None:
    with pytest.raises(UsageError, match="system directory"):
        check_fleet_dir(dest)


def test_a_path_through_a_symlink_to_a_system_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sneaky").symlink_to("/boot")
    with pytest.raises(UsageError, match="resolves to /boot"):
        check_fleet_dir(tmp_path / "sneaky" / "fleet")


def test_a_manifest_with_dest_slash_slash_boot_provisions_nothing_there(tmp_path: Path) -> None:
    before = set(os.listdir("/boot"))
    with pytest.raises(UsageError, match="system directory /boot"):
        build_manifest(tmp_path / "f.toml", {"fleet": {"count": 2, "dest": "//boot"},
                                             "golden_image": {"path": "gi.img"}})
    assert set(os.listdir("/boot")) == before


def test_the_fleet_directory_is_the_resolved_one(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    m = make_fleet(tmp_path, dest="via/./fleet//")
    assert m.dest == tmp_path / "real" / "fleet"


def test_a_fleet_directory_swapped_for_a_symlink_after_loading_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    m = make_fleet(tmp_path, dest="a/fleet")
    os.rename(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    with pytest.raises(UsageError, match="now resolves to"):
        engine.provision(m, FakeBackend())


# --- never delete what clonefleet did not make ----------------------------------------------------


def test_destroy_keeps_a_foreign_file_named_like_a_replica(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=4, g=2)
    engine.provision(m, FakeBackend())
    foreign = m.dest / "golden" / "gi-r9.img"
    foreign.write_bytes(b"mine")
    result = engine.destroy(m, FakeBackend())
    assert (result.removed, result.replicas_removed) == (4, 1)
    assert foreign.read_bytes() == b"mine"
    assert "golden" in result.kept


def test_provision_keeps_a_foreign_file_named_like_an_old_temporary(tmp_path: Path) -> None:
    m = make_fleet(tmp_path)
    m.dest.mkdir()
    user = m.dest / ".cf-tmp.userfile"
    user.write_bytes(b"mine")
    engine.provision(m, FakeBackend())
    engine.provision(m, FakeBackend())
    assert user.read_bytes() == b"mine"
    assert engine.status(m, FakeBackend()).unknown == (".cf-tmp.userfile",)
    assert ".cf-tmp.userfile" in engine.destroy(m, FakeBackend()).kept
    assert user.read_bytes() == b"mine"


def test_a_clone_replaced_by_a_foreign_file_is_kept_by_destroy_and_by_a_shrinking_provision(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=3)
    engine.provision(m, FakeBackend())
    for name in ("vm-0002.fake", "vm-0003.fake"):  # written beside, then renamed over the clone
        (tmp_path / name).write_bytes(b"a user's file, not the clone")
        os.rename(tmp_path / name, m.dest / name)
    smaller = make_fleet(tmp_path, count=2)  # vm-0003 no longer wanted; vm-0002 still is, and is not ours
    with pytest.raises(UsageError, match="vm-0002.fake: is not the clone clonefleet made"):
        engine.provision(smaller, FakeBackend())
    st = engine.status(smaller, FakeBackend())
    assert st.count("foreign") == 1 and not st.in_sync and "move them away" in st.advice
    result = engine.destroy(m, FakeBackend())
    for name in ("vm-0002.fake", "vm-0003.fake"):
        assert (m.dest / name).read_bytes() == b"a user's file, not the clone"
        assert any(k.startswith(name) for k in result.kept)


def test_a_foreign_private_folder_is_refused_never_emptied(tmp_path: Path) -> None:
    m = make_fleet(tmp_path)
    (m.dest / ".clonefleet" / "tmp").mkdir(parents=True)
    (m.dest / ".clonefleet" / "tmp" / "notes").write_bytes(b"mine")
    with pytest.raises(UsageError, match="does not record"):
        engine.provision(m, FakeBackend())
    assert (m.dest / ".clonefleet" / "tmp" / "notes").read_bytes() == b"mine"


# --- the GI during a run, and since ----------------------------------------------------------------


class ChangesTheGi(FakeBackend):
    """A fake that, while it makes the second clone, writes into the GI as an outside process would."""

    def apply(self, recipe: Recipe, prepared: Prepared, dest: Path) -> None:
        super().apply(recipe, prepared, dest)
        if len(self.made) == 2:
            with open(self.gi, "r+b") as f:
                f.write(b"changed")


@pytest.mark.parametrize("method", ["thin", "snapshot"])
def test_a_gi_changed_during_a_run_fails_it_and_removes_the_copies(tmp_path: Path, method: str) -> None:
    m = make_fleet(tmp_path, count=6, method=method)
    backend = ChangesTheGi()
    backend.gi = m.gi  # type: ignore[attr-defined]
    with pytest.raises(engine.ProvisionFailed, match="changed while clones were made") as info:
        engine.provision(m, backend, workers=1)
    assert "\n" not in info.value.message
    left = sorted(n for n in os.listdir(m.dest) if n.endswith(".fake"))
    # Thin copies hold the GI's data: every copy of the run goes. A snapshot clone holds only the GI's
    # path: the one finished before the change stays; the one made while it changed goes.
    assert left == ([] if method == "thin" else ["vm-0001.fake"])
    st = engine.status(m, FakeBackend())
    assert not st.gi_ok and not st.in_sync


def test_status_of_a_fleet_whose_gi_changed_reports_it_without_advising_destroy(
        tmp_path: Path, cli: Callable[..., object]) -> None:
    m = make_fleet(tmp_path, count=2)
    engine.provision(m, FakeBackend())
    with open(m.gi, "r+b") as f:
        f.write(b"changed")
    r = cli("status", str(m.path), "--json")
    assert r.code == 1, r.err  # type: ignore[attr-defined]
    import json

    data = json.loads(r.out)  # type: ignore[attr-defined]
    assert data["gi_ok"] is False and data["in_sync"] is False and "SHA-256" in data["gi_detail"]
    assert "destroy" not in r.out + r.err  # type: ignore[attr-defined]


# --- a GI that is no image file --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "reason"), [("devnull", "is a device"), ("dir", "is a directory"),
                                               ("fifo", "is a FIFO"), ("manifest", "the fleet manifest itself")])
def test_a_gi_that_is_no_image_file_is_exit_2_with_the_right_reason(tmp_path: Path, kind: str, reason: str,
                                                                    cli: Callable[..., object]) -> None:
    m = make_fleet(tmp_path)
    gi = {"devnull": "/dev/null", "dir": str(tmp_path / "d"), "fifo": str(tmp_path / "p"), "manifest": str(m.path)}
    if kind == "dir":
        (tmp_path / "d").mkdir()
    if kind == "fifo":
        os.mkfifo(tmp_path / "p")
    text = m.path.read_text().replace('path = "gi.img"', f'path = "{gi[kind]}"')
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(("sha256", "bytes")))
    m.path.write_text(text + "\n")
    started = time.monotonic()
    r = cli("provision", str(m.path))
    assert time.monotonic() - started < 10  # never blocks on a FIFO
    assert r.code == 2 and reason in r.err and len(r.err.strip().splitlines()) == 1, r.err  # type: ignore
    assert not m.dest.exists()


# --- space --------------------------------------------------------------------------------------


@pytest.mark.backend
def test_a_plan_that_needs_more_than_the_free_space_is_refused_or_forced(tmp_path: Path,
                                                                         cli: Callable[..., object]) -> None:
    with mounted("tmpfs", 64 * 1024**2) as small:
        fleet = small / "fleet"
        m = make_fleet(tmp_path, count=3, method="full", dest=str(fleet))
        gi = tmp_path / "big.img"
        with open(gi, "wb") as f:
            f.truncate(32 * 1024**2)  # sparse: three full copies need 96 MiB, 64 MiB are free
        _space(cli, m)


def _space(cli: Callable[..., object], m: Manifest) -> None:
    text = m.path.read_text().replace('path = "gi.img"', 'path = "big.img"')
    m.path.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith(("sha256", "bytes"))) + "\n")
    r = cli("provision", str(m.path))
    assert r.code == 2 and "are free" in r.err and "--force" in r.err, r.err  # type: ignore[attr-defined]
    assert len(r.err.strip().splitlines()) == 1  # type: ignore[attr-defined]
    assert not m.dest.exists()
    r = cli("provision", str(m.path), "--force")  # the fake's clones are small: the run goes through
    assert r.code == 0 and "warning" in r.err, r.err  # type: ignore[attr-defined]


# --- no tool left running -----------------------------------------------------------------------


def test_a_tool_that_outlives_its_timeout_is_killed_by_pid() -> None:
    started = time.monotonic()
    with pytest.raises(tools.ToolError, match="did not finish within 0.5 s and was killed"):
        tools.run_tool(["sleep", "30"], timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert tools.running_pids() == []


def test_sigterm_kills_the_running_tools(tmp_path: Path) -> None:
    script = ("import sys; from clonefleet.storage import tools\n"
              "with tools.stop_on_signals():\n"
              "    tools.run_tool(['sleep', '60'])\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            stderr=subprocess.PIPE, text=True)
    try:
        child = None
        deadline = time.monotonic() + 20
        while child is None and time.monotonic() < deadline:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            found = kids.read_text().split() if kids.exists() else []
            child = int(found[0]) if found else None
            time.sleep(0.02)
        assert child is not None
        proc.terminate()
        assert proc.wait(timeout=20) != 0
        assert proc.stderr is not None and "SIGTERM" in proc.stderr.read()
        with pytest.raises(OSError) as gone:
            os.kill(child, 0)
        assert gone.value.errno == errno.ESRCH
    finally:
        proc.kill()
        proc.wait()
