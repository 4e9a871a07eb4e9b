"""The provisioning commands: help text, one line and exit 2 for bad input, --json reports (fake backend)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from clonefleet.provision.manifest import load_manifest
from fakes import fake_backend

__all__ = ["fake_backend"]


@pytest.fixture(autouse=True)
def _fake_backend_registered(fake_backend: None) -> None:
    """Most of these tests provision with the fake backend, which users never see."""
    return None

COMMANDS = ["init", "provision", "status", "destroy", "capacity", "writes", "refresh"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli: Callable[..., object], command: str) -> None:
    r = cli(command, "--help")
    assert r.code == 0  # type: ignore[attr-defined]
    text = r.out  # type: ignore[attr-defined]
    assert "Usage:" in text and len(text.split("\n")) > 4
    if command != "init":
        assert "MANIFEST" in text
    if command in ("provision", "status", "capacity", "writes", "refresh", "destroy", "init"):
        assert "--json" in text


def gi_file(tmp_path: Path) -> Path:
    gi = tmp_path / "gi.img"
    gi.write_bytes(os.urandom(8192))
    return gi


def init(cli: Callable[..., object], tmp_path: Path, *extra: str) -> object:
    return cli("init", "--gi", str(gi_file(tmp_path)), "--dest", str(tmp_path / "clones"), "-n", "4",
               "--backend", "fake", "-o", str(tmp_path / "f.toml"), *extra)


def one_line_usage_error(r: object) -> str:
    assert r.code == 2, (r.out, r.err)  # type: ignore[attr-defined]
    lines = r.err.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("clonefleet: error:"), lines
    assert "Traceback" not in r.err  # type: ignore[attr-defined]
    return str(lines[0])


def test_init_writes_a_manifest_with_the_checksum(cli: Callable[..., object], tmp_path: Path) -> None:
    r = init(cli, tmp_path, "--json")
    assert r.code == 0, r.err  # type: ignore[attr-defined]
    data = json.loads(r.out)  # type: ignore[attr-defined]
    m = load_manifest(tmp_path / "f.toml")
    assert data["gi_sha256"] == m.gi_sha256 and len(m.gi_sha256 or "") == 64
    assert m.dest == tmp_path / "clones" and m.count == 4
    one_line_usage_error(init(cli, tmp_path))  # exists: --force needed
    assert init(cli, tmp_path, "--force").code == 0  # type: ignore[attr-defined]


def test_init_auto_says_which_g_from_which_presets_and_that_they_are_not_this_storage(
        cli: Callable[..., object], tmp_path: Path) -> None:
    from clonefleet.planner import evaluate, golden_images_for
    from clonefleet.presets import load_array, load_fleet, load_function

    fleet, array, snapshot = load_fleet("server-linux"), load_array("midrange-2012"), load_function("snapshot")
    k = int(evaluate(fleet, array, snapshot, 1000).clones_per_gi)
    g = golden_images_for(fleet, array, snapshot, 1000)
    assert g is not None and g > 1  # the case worth explaining: several GIs
    args = ("--golden-images", "auto", "--count", "1000", "--method", "snapshot")
    r = init(cli, tmp_path, *args, "--json")
    assert r.code == 0, r.err  # type: ignore[attr-defined]
    choice = json.loads(r.out)["golden_images_choice"]  # type: ignore[attr-defined]
    assert json.loads(r.out)["golden_images"] == "auto"  # type: ignore[attr-defined]  # the key kept
    assert (choice["golden_images"], choice["clones_per_gi"]) == (g, k)
    assert (choice["fleet_preset"], choice["array_preset"]) == ("server-linux", "midrange-2012")
    assert choice["fleet_preset_defaulted"] and choice["array_preset_defaulted"]
    assert choice["limited_by"] == "GI's disks" and f"ceil(1,000 / {k})" in choice["reason"]
    assert "midrange-2012" in choice["storage_warning"] and "--array" in choice["storage_warning"]
    assert "clonefleet presets" in choice["storage_warning"]
    r = init(cli, tmp_path, *args, "--force")
    assert r.code == 0, r.err  # type: ignore[attr-defined]
    out = " ".join(r.out.split())  # type: ignore[attr-defined]
    assert f"g = {g} (auto)" in out and f"at most {k} clones" in out
    assert "fleet server-linux (the default), array midrange-2012 (the default)" in out
    err = " ".join(r.err.split())  # type: ignore[attr-defined]
    assert err.startswith("clonefleet: warning: g comes from the shipped array preset midrange-2012")


def test_init_auto_with_the_users_own_array_file_has_no_storage_warning(
        cli: Callable[..., object], tmp_path: Path) -> None:
    from importlib import resources

    mine = tmp_path / "my-array.toml"
    shipped = resources.files("clonefleet.presets").joinpath("arrays/allflash-2024.toml")
    mine.write_text(shipped.read_text(encoding="utf-8").replace('name = "allflash-2024"', 'name = "my-array"'))
    r = init(cli, tmp_path, "--golden-images", "auto", "--array", str(mine), "--preset", "desktop-win11", "--json")
    assert r.code == 0, r.err  # type: ignore[attr-defined]
    choice = json.loads(r.out)["golden_images_choice"]  # type: ignore[attr-defined]
    assert choice["storage_warning"] is None and choice["array_preset"] == str(mine)
    assert not choice["array_preset_defaulted"] and choice["golden_images"] == 1


def test_init_with_a_given_g_prints_no_auto_explanation(cli: Callable[..., object], tmp_path: Path) -> None:
    r = init(cli, tmp_path, "--golden-images", "2")
    assert r.code == 0 and "auto" not in r.out and r.err == ""  # type: ignore[attr-defined]
    choice = json.loads(init(cli, tmp_path, "--golden-images", "2", "--force", "--json").out)[  # type: ignore[attr-defined]
        "golden_images_choice"]
    assert choice["golden_images"] == 2 and choice["reason"].startswith("given")


@pytest.mark.parametrize(("args", "needle"), [
    (("--clone-name", "../x{index}"), "clone_name"),
    (("--clone-name", "/etc/{index}"), "clone_name"),
    (("--clone-name", "a" * 300 + "{index}"), "clone_name"),
    (("--method", "linked"), "method"),
    (("--backend", "zfs"), "backend"),
    (("--golden-images", "0"), "--golden-images = '0': a whole number from 1 to 10,000"),
    (("--golden-images", "many"), "--golden-images = 'many'"),
    (("--golden-images", "²"), "--golden-images = '²'"),
    (("--count", "1e400"), "Invalid value for '--count'"),
    (("--workers", "nan"), "Invalid value for '--workers'"),
    (("--cluster-size", "lots"), "cluster-size"),
    (("--write-bytes", "12 parsecs"), "write-bytes"),
])
def test_init_refuses_bad_flags_in_one_line(cli: Callable[..., object], tmp_path: Path,
                                            args: tuple[str, ...], needle: str) -> None:
    assert needle in one_line_usage_error(init(cli, tmp_path, *args))
    assert not (tmp_path / "f.toml").exists()


def test_init_refuses_a_nul_byte_and_a_system_dest(cli: Callable[..., object], tmp_path: Path) -> None:
    gi = gi_file(tmp_path)
    one_line_usage_error(cli("init", "--gi", str(gi), "--dest", "/etc", "-n", "2", "-o", str(tmp_path / "a.toml")))
    one_line_usage_error(cli("init", "--gi", str(gi), "--dest", "x\x00y", "-n", "2", "-o", str(tmp_path / "b.toml")))


@pytest.mark.parametrize("command", ["provision", "status", "destroy", "capacity", "writes"])
def test_missing_manifest_is_one_line(cli: Callable[..., object], tmp_path: Path, command: str) -> None:
    assert "no such file" in one_line_usage_error(cli(command, str(tmp_path / "none.toml")))


def test_malformed_manifest_is_one_line(cli: Callable[..., object], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[fleet]\ncount = -3\ndest = "c"\n[golden_image]\npath = "gi.img"\n')
    assert "fleet.count" in one_line_usage_error(cli("provision", str(bad)))


def test_provision_status_writes_capacity_destroy_json(cli: Callable[..., object], tmp_path: Path) -> None:
    assert init(cli, tmp_path).code == 0  # type: ignore[attr-defined]
    manifest = str(tmp_path / "f.toml")
    r = cli("status", manifest, "--json")
    assert r.code == 1 and json.loads(r.out)["missing"] == 4  # type: ignore[attr-defined]
    r = cli("provision", manifest, "--dry-run", "--json")
    assert r.code == 0 and json.loads(r.out)["create"] == 4  # type: ignore[attr-defined]
    assert not (tmp_path / "clones").exists()  # a dry run changes nothing
    r = cli("capacity", manifest)
    assert "not provisioned" in one_line_usage_error(r)
    r = cli("provision", manifest, "--json", "--workers", "2")
    assert r.code == 0 and json.loads(r.out)["created"] == 4  # type: ignore[attr-defined]
    r = cli("provision", manifest)
    assert r.code == 0 and "0 created" in r.out  # type: ignore[attr-defined]
    r = cli("status", manifest, "--json")
    assert r.code == 0 and json.loads(r.out)["in_sync"]  # type: ignore[attr-defined]
    r = cli("writes", manifest, "--json")
    assert r.code == 0 and json.loads(r.out)["written_now"] == 4  # type: ignore[attr-defined]
    r = cli("capacity", manifest, "--json")
    assert r.code == 0 and json.loads(r.out)["clones"] == 4  # type: ignore[attr-defined]
    one_line_usage_error(cli("provision", manifest, "--workers", "0"))
    one_line_usage_error(cli("destroy", manifest))  # --yes needed
    r = cli("destroy", manifest, "--yes", "--json")
    assert r.code == 0 and json.loads(r.out)["removed"] == 4  # type: ignore[attr-defined]
    assert (tmp_path / "gi.img").exists()


def widest(out: str) -> int:
    """The longest line of ``out``: at most the width the output was laid out for."""
    return max(len(line) for line in out.splitlines())


@pytest.mark.parametrize("columns", ["80", "200"])
def test_status_and_capacity_tables_fit_the_width(cli: Callable[..., object], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    assert init(cli, tmp_path).code == 0  # type: ignore[attr-defined]
    manifest = str(tmp_path / "f.toml")
    assert cli("provision", manifest).code == 0  # type: ignore[attr-defined]
    assert cli("writes", manifest).code == 0  # type: ignore[attr-defined]
    status = cli("status", manifest)
    assert status.code == 0, status.err  # type: ignore[attr-defined]
    out = status.out  # type: ignore[attr-defined]
    assert widest(out) <= int(columns) and "in sync" in out
    counts = {cells[0]: cells[1] for cells in (
        [c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines() if line.startswith("│"))}
    assert counts["wanted"] == counts["ok"] == counts["boot writes applied"] == "4" and counts["missing"] == "0"
    capacity = cli("capacity", manifest)
    assert capacity.code == 0, capacity.err  # type: ignore[attr-defined]
    out = capacity.out  # type: ignore[attr-defined]
    assert widest(out) <= int(columns)
    assert "per clone (mean)" in out and "total (S)" in out and "measured" in out
