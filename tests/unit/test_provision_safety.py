"""Hostile names and paths are refused with one line; good ones pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet.errors import UsageError
from clonefleet.provision.manifest import build_manifest
from clonefleet.storage.paths import NameTemplate, check_fleet_dir, check_name


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".", "x\x00y", "a" * 300, ".hidden",
                                  "-rf", "a..b", "sp ace", "tab\t", "ünï"])
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError) as info:
        check_name(name)
    assert "\n" not in info.value.message


@pytest.mark.parametrize("name", ["vm-0001", "web_01.qcow2", "A", "x" * 128])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name) == name


@given(st.text(min_size=1, max_size=200))
def test_a_name_that_passes_stays_inside_the_directory(name: str) -> None:
    try:
        check_name(name)
    except UsageError:
        return
    base = Path("/fleet")
    assert (base / name).resolve().parent == base.resolve()
    assert len(name) <= 128 and "\x00" not in name


@pytest.mark.parametrize("template", ["../{index}", "/abs/{index}", "{index}/x", "vm-{index.__class__}",
                                      "vm-{0}", "vm", "vm-{index}-{index}", "x\x00{index}", "a" * 300 + "{index}"])
def test_hostile_templates_are_refused(template: str) -> None:
    with pytest.raises(UsageError):
        NameTemplate.parse(template)


def test_templates_make_padded_names() -> None:
    t = NameTemplate.parse("web-{index:04d}.a")
    assert (t.name(7), t.name(12345)) == ("web-0007.a", "web-12345.a")
    assert NameTemplate.parse("n{index}").name(3) == "n3"


@pytest.mark.parametrize("dest", ["/", "/etc", "/usr", "a\x00b"])
def test_system_and_nul_fleet_dirs_are_refused(dest: str) -> None:
    with pytest.raises(UsageError):
        check_fleet_dir(Path(dest))


def test_a_symlinked_fleet_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UsageError, match="symlink"):
        check_fleet_dir(tmp_path / "link")


def test_manifest_with_hostile_clone_name_is_refused(tmp_path: Path) -> None:
    data = {"fleet": {"count": 3, "dest": "d", "clone_name": "../../etc/{index}"},
            "golden_image": {"path": "gi.img"}}
    with pytest.raises(UsageError, match="clone_name"):
        build_manifest(tmp_path / "m.toml", data)


def test_index_of_reads_back_only_names_the_template_makes() -> None:
    t = NameTemplate.parse("vm-{index:04d}")
    assert [t.index_of(n) for n in ("vm-0007", "vm-12345", "vm-7", "vm-0000", "vm-00007", "vm-x", "web-0007")] \
        == [7, 12345, None, None, None, None, None]
    assert NameTemplate.parse("n{index}.a").index_of("n12.a") == 12
