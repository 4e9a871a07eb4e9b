"""Self-tests of the suite's own rules (tests/helpers.py, tests/conftest.py).

A test that runs a storage tool without the ``backend`` marker fails; a missing tool or
missing root is a skip on a developer's machine and a failure in CI.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import StorageToolWithoutMarker, require_tool, storage_tool_guard, storage_tool_in, unavailable

TESTS = Path(__file__).resolve().parents[1]
#: A path that cannot run: should a guard let it through, nothing is started.
NOWHERE = "/nonexistent-clonefleet-test/qemu-img"


@pytest.mark.parametrize(("args", "shell", "tool"), [
    (["qemu-img", "info", "x.qcow2"], False, "qemu-img"),
    ([NOWHERE, "check"], False, "qemu-img"),
    ([Path("/usr/sbin/mkfs.xfs"), "-q"], False, "mkfs.xfs"),
    (["sudo", "-n", "losetup", "-f"], False, "losetup"),
    (["timeout", "10", "qemu-system-x86_64", "-m", "1G"], False, "qemu-system-x86_64"),
    (["sh", "-c", "true && xfs_spaceman -c 'prealloc -s' /mnt"], False, "xfs_spaceman"),
    ("mount -o loop fs.img /mnt", True, "mount"),
    (b"fio --name=x", False, "fio"),
    (["rbd", "-c", "ceph.conf", "ls"], False, "rbd"),
    (["/usr/bin/ceph-osd", "-f", "-i", "0"], False, "ceph-osd"),
    ("rados -p rbd ls", True, "rados"),
    (["python3", "-c", "print('mount')"], False, None),
    (["cp", "--reflink=always", "a", "b"], False, None),
    (["stat", "-f", "-c", "%T", "/tmp"], False, None),
    ("echo qemu-image", True, None),
])
def test_storage_tools_are_recognised(args: object, shell: bool, tool: str | None) -> None:
    assert storage_tool_in(args, shell=shell) == tool


def test_the_executable_argument_counts() -> None:
    assert storage_tool_in(["anything"], executable="/usr/bin/qemu-io") == "qemu-io"


@pytest.mark.parametrize("start", [
    lambda: subprocess.run([NOWHERE, "--version"], check=False),
    lambda: subprocess.Popen(f"{NOWHERE} --version", shell=True).wait(),
    lambda: os.system(f"{NOWHERE} --version"),
    lambda: os.posix_spawnp("qemu-img", ["qemu-img", "--version"], {}),
    lambda: os.execv(NOWHERE, [NOWHERE, "--version"]),
    lambda: os.execvp("mkfs.ext4", ["mkfs.ext4", "-V"]),
])
def test_the_guard_refuses_every_way_to_start_a_tool(start: object) -> None:
    with pytest.raises(pytest.fail.Exception, match="without the backend marker"), storage_tool_guard("probe"), \
            pytest.raises(StorageToolWithoutMarker, match="probe runs"):
        start()  # type: ignore[operator]


def test_a_swallowed_refusal_still_fails() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"probe runs a storage tool \(qemu-img\)"), \
            storage_tool_guard("probe"), contextlib.suppress(Exception):
        subprocess.run([NOWHERE], check=True)


def test_other_programs_run_under_the_guard() -> None:
    with storage_tool_guard("probe") as seen:
        out = subprocess.run([sys.executable, "-c", "print('mount')"], capture_output=True, text=True, check=True)
    assert out.stdout == "mount\n" and seen == []


def test_the_suite_fails_an_unmarked_test_that_runs_qemu_img(tmp_path: Path) -> None:
    """The hooks of tests/conftest.py, in a pytest run of their own."""
    (tmp_path / "test_probe.py").write_text(f'''
import subprocess
import pytest

def test_unmarked():
    subprocess.run(["{NOWHERE}", "--version"])

@pytest.fixture(scope="module")
def image():
    subprocess.run(["qemu-img", "create", "x.qcow2", "1M"], capture_output=True)

def test_unmarked_fixture(image):
    pass

@pytest.mark.backend
def test_marked():
    with pytest.raises(FileNotFoundError):  # the guard let it through to the kernel
        subprocess.run(["{NOWHERE}", "--version"])
''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          "-p", "conftest", "-W", "ignore::pytest.PytestUnknownMarkWarning", "test_probe.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed, 1 error" in run.stdout, run.stdout
    assert "test_probe.py::test_unmarked runs a storage tool (qemu-img) without the backend marker" in run.stdout
    assert "test_probe.py::test_unmarked_fixture runs a storage tool (qemu-img)" in run.stdout
    assert not (tmp_path / "x.qcow2").exists()


def test_a_missing_tool_skips_at_a_desk_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-here"):
        require_tool("no-such-tool-here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-here"):
        require_tool("no-such-tool-here")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        unavailable("no tmpfs")


def test_every_test_module_has_a_name_of_its_own() -> None:
    """pytest imports test files by their base name (rootdir-relative imports are off): two files of one
    name in different folders stop the whole collection, so CI would run nothing."""
    names: dict[str, list[str]] = {}
    for path in TESTS.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(TESTS)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
