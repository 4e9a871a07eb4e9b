"""`clonefleet gi build`: a real golden image from the CLI; bad flags are one line, exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from clonefleet.provision.goldimage import sha256_file
from conftest import CliResult
from helpers import require_tool


@pytest.mark.backend
def test_gi_build_json_and_refuses_to_overwrite(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    require_tool("qemu-img", "mkfs.ext4", "debugfs")
    r = cli("gi", "build", "--out", str(tmp_path), "--size", "32 MiB", "--seed", "3", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    path = Path(doc["path"])
    assert path.is_file() and doc["format"] == "qcow2"
    assert doc["virtual_bytes"] == 32 * 2**20
    assert 0 < doc["used_bytes"] < doc["virtual_bytes"]
    assert doc["sha256"] == sha256_file(path)
    again = cli("gi", "build", "--out", str(tmp_path), "--size", "32 MiB")
    assert again.code == 2 and "already exists" in again.err and again.err.count("\n") == 1
    assert sha256_file(path) == doc["sha256"]


def test_gi_build_bad_flags(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    for args, expected in ((["--size", "64 MX"], "unknown unit 'MX'"), (["--format", "vmdk"], "one of qcow2, raw")):
        r = cli("gi", "build", "--out", str(tmp_path / "x"), *args)
        assert r.code == 2 and expected in r.err and r.err.count("\n") == 1
