"""Manifest parsing: defaults, relative paths, one-line errors naming the field, g = auto."""

from __future__ import annotations

from pathlib import Path

import pytest

from clonefleet.errors import UsageError
from clonefleet.presets import Method
from clonefleet.provision.manifest import (
    build_manifest,
    load_manifest,
    manifest_text,
    resolve_golden_images,
)

BASE = {"fleet": {"count": 4, "dest": "clones"}, "golden_image": {"path": "gi.qcow2"}}


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    m = build_manifest(tmp_path / "f.toml", BASE)
    assert m.dest == tmp_path / "clones" and m.gi == tmp_path / "gi.qcow2"
    assert (m.backend, m.method, m.golden_images, m.cluster_bytes) == ("qcow2", Method.SNAPSHOT, 1, 65536)
    assert m.clone_names() == ["vm-0001", "vm-0002", "vm-0003", "vm-0004"]


@pytest.mark.parametrize(("section", "key", "value", "needle"), [
    ("fleet", "count", 0, "fleet.count"),
    ("fleet", "count", "ten", "fleet.count"),
    ("clones", "method", "linked", "clones.method"),
    ("clones", "backend", "zfs", "clones.backend"),
    ("clones", "golden_images", 0, "clones.golden_images"),
    ("clones", "cluster_size", "3 KiB", "clones.cluster_size"),
    ("clones", "workers", 1000, "clones.workers"),
    ("golden_image", "sha256", "xyz", "golden_image.sha256"),
    ("fleet", "colour", "red", "fleet.colour"),
])
def test_bad_fields_name_themselves(tmp_path: Path, section: str, key: str, value: object, needle: str) -> None:
    data = {k: dict(v) for k, v in BASE.items()}
    data.setdefault(section, {})[key] = value
    with pytest.raises(UsageError) as info:
        build_manifest(tmp_path / "f.toml", data)
    assert needle in info.value.message and "\n" not in info.value.message


def test_replicas_only_for_snapshot(tmp_path: Path) -> None:
    data = {**BASE, "clones": {"method": "thin", "golden_images": 3}}
    with pytest.raises(UsageError, match="golden_images"):
        build_manifest(tmp_path / "f.toml", data)
    auto = build_manifest(tmp_path / "f.toml", {**BASE, "clones": {"method": "full", "golden_images": "auto"}})
    assert resolve_golden_images(auto) == 1


def test_auto_g_is_the_planners(tmp_path: Path) -> None:
    data = {"fleet": {"count": 1000, "dest": "c", "preset": "server-ws2008", "array": "midrange-2012"},
            "golden_image": {"path": "gi.qcow2"}, "clones": {"golden_images": "auto"}}
    m = build_manifest(tmp_path / "f.toml", data)
    # The paper's server case: g = 3 (design/model.md; tests/validation/test_fig4.py's worked table).
    assert resolve_golden_images(m) == 3


def test_text_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text(manifest_text({**BASE, "clones": {"method": "full", "workers": 2}}))
    m = load_manifest(path)
    assert (m.method, m.workers, m.count) == (Method.FULL, 2, 4)


def test_missing_and_malformed_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        load_manifest(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[fleet\ncount=")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_manifest(bad)
