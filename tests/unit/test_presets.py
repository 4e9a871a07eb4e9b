"""Presets: every shipped one loads and cites a source or an assumption for each figure;
bad preset files are refused with one line naming the field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from clonefleet.errors import UsageError
from clonefleet.presets import list_presets, load_array, load_fleet, load_function, preset_names
from clonefleet.presets.schema import ARRAY_SPECS, FLEET_SPECS, FUNCTION_SPECS

SHIPPED = Path(__file__).resolve().parents[2] / "src" / "clonefleet" / "presets"


def test_required_presets_are_shipped() -> None:
    assert {"server-ws2008", "desktop-win7", "desktop-win11", "server-linux"} <= set(preset_names("fleet"))
    assert {"midrange-2012", "allflash-2024"} <= set(preset_names("array"))
    assert {"full", "thin", "snapshot", "qcow2-linked", "qcow2-copy", "rbd-clone", "rbd-copy",
            "reflink"} <= set(preset_names("function"))


@pytest.mark.parametrize("info", list_presets(), ids=lambda i: f"{i.kind}:{i.name}")
def test_every_figure_has_a_source_or_an_assumption(info: object) -> None:
    specs = {"fleet": FLEET_SPECS, "array": ARRAY_SPECS, "function": FUNCTION_SPECS}[info.kind]  # type: ignore[attr-defined]
    text = (SHIPPED / f"{info.kind}s" / f"{info.name}.toml").read_text()  # type: ignore[attr-defined]
    figures = [s.key for s in specs if s.is_figure and f"[{s.key}]" in text]
    assert figures, "a preset without figures"
    assert set(figures) == set(info.sources)  # type: ignore[attr-defined]
    for key, where in info.sources.items():  # type: ignore[attr-defined]
        assert len(where) > 10, key


def test_paper_presets_hold_model_md_values() -> None:
    # shared/design/model.md, "Presets that reproduce Fig. 4" (its table is in docs/background.md too).
    a = load_array("midrange-2012")
    assert (a.processor_iops, a.volume_iops_limit, a.disk_iops, a.disks, a.gi_disks) == (900000, 50000, 180, 480, 8)
    assert (a.raid_write_penalty, a.cache_hit_shared, a.cache_hit_private, a.cow_read_fraction) == (2, 0.95, 0.30, 0.25)
    d = load_fleet("desktop-win7")
    assert (d.host_iops, d.read_fraction, d.gi_used_bytes) == (80, 0.84, 15 * 2**30)
    assert (d.boot_write_bytes, d.boot_write_extents, d.boot_write_span_bytes) == (100 * 2**20, 2000, 1350 * 2**20)
    s = load_fleet("server-ws2008")
    assert (s.host_iops, s.read_fraction, s.gi_used_bytes) == (40, 0.85, 10 * 2**30)
    assert (s.boot_write_bytes, s.boot_write_extents, s.boot_write_span_bytes) == (40 * 2**20, 300, 630 * 2**20)
    assert load_function("thin").unit_bytes == 42 * 2**20
    assert load_function("snapshot").unit_bytes == 64 * 2**10


def _copy_with(tmp_path: Path, kind: str, name: str, old: str, new: str) -> Path:
    text = (SHIPPED / f"{kind}s" / f"{name}.toml").read_text()
    assert old in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_user_file_loads_like_a_preset(tmp_path: Path) -> None:
    path = _copy_with(tmp_path, "array", "midrange-2012", "value = 480", "value = 960")
    assert load_array(path).disks == 960
    assert load_array(str(path)).name == "midrange-2012"


BAD = [
    ("fleet", "desktop-win7", 'value = "15 GiB"', 'value = "15 GX"', "gi_used", "unknown unit 'GX'"),
    ("fleet", "desktop-win7", "value = 0.84", "value = -0.1", "read_fraction", "between 0 and 1"),
    ("fleet", "desktop-win7", "value = 62000", "value = 0", "boot_ios", "greater than 0"),
    ("fleet", "desktop-win7", "value = 62000", 'value = "many"', "boot_ios", "a number"),
    ("array", "midrange-2012", "value = 480", "value = 4.5", "disks", "whole number"),
    ("array", "midrange-2012", "[disks]\nvalue = 480", "[disks]\nvalue = 480\nsource = 3", "disks.source", "a string"),
    ("array", "midrange-2012", "[disk_iops]", "[disk_ios]", "disk_ios", "unknown field; allowed"),
    ("function", "thin", 'mirror = "paper"', 'mirror = "both"', "mirror", "one of paper, physical"),
]


@pytest.mark.parametrize(("kind", "name", "old", "new", "field", "allowed"), BAD)
def test_bad_fields_name_the_field_and_what_is_allowed(
    tmp_path: Path, kind: str, name: str, old: str, new: str, field: str, allowed: str
) -> None:
    path = _copy_with(tmp_path, kind, name, old, new)
    loader = {"fleet": load_fleet, "array": load_array, "function": load_function}[kind]
    with pytest.raises(UsageError) as err:
        loader(path)
    message = err.value.message
    assert f"field '{field}'" in message and allowed in message and "\n" not in message


def test_missing_field_is_named(tmp_path: Path) -> None:
    text = (SHIPPED / "arrays" / "midrange-2012.toml").read_text()
    start = text.index("[gi_disks]")
    end = text.index("[raid_write_penalty]")
    path = tmp_path / "a.toml"
    path.write_text(text[:start] + text[end:])
    with pytest.raises(UsageError, match="field 'gi_disks' = None: missing; required"):
        load_array(path)


def test_figure_without_source_is_refused(tmp_path: Path) -> None:
    path = _copy_with(tmp_path, "array", "midrange-2012",
                      '[disks]\nvalue = 480\nassumption = "pool size fitting the paper\'s Fig. 4 '
                      '(docs/background.md, Presets that reproduce Fig. 4)"',
                      "[disks]\nvalue = 480")
    with pytest.raises(UsageError, match="needs a 'source'"):
        load_array(path)


def test_not_toml_and_unknown_names(tmp_path: Path) -> None:
    junk = tmp_path / "junk.toml"
    junk.write_text("this is = = not toml\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_fleet(junk)
    with pytest.raises(UsageError,
                       match="unknown fleet preset .desktop-win8.; known: debian-boot, desktop-linux, "
                             "desktop-win10, desktop-win11, desktop-win7"):
        load_fleet("desktop-win8")
    with pytest.raises(UsageError, match="does not exist"):
        load_array(tmp_path / "nowhere.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="not UTF-8 text|not valid TOML"):
        load_array(binary)


def test_wrong_kind_is_refused() -> None:
    path = SHIPPED / "arrays" / "midrange-2012.toml"
    with pytest.raises(UsageError, match="field 'preset.kind' = 'array': 'fleet' here"):
        load_fleet(path)


def test_shipped_sources_cite_only_what_a_user_can_find() -> None:
    # No file outside the repository (the design folder's model.md); every docs/*.md of ours cited exists
    # (docs/interop/qcow2.rst is QEMU's, public, named with its project).
    repo = SHIPPED.parents[2]
    for path in SHIPPED.glob("*/*.toml"):
        text = path.read_text()
        assert "model.md" not in text, path.name
        for cited in {w.strip("'\"(),;:") for w in text.split() if w.startswith(("docs/", "(docs/")) and ".md" in w}:
            assert (repo / cited.lstrip("(")).is_file(), (path.name, cited)


def test_presets_show_values_in_human_units() -> None:
    from clonefleet.presets import load_preset

    info = load_preset("desktop-win11")
    shown = {f.key: f for f in info.figures}
    assert shown["gi_used"].text == "27 GiB" and shown["gi_used"].value == 27 * 2**30 and shown["gi_used"].assumed
    assert shown["boot_window"].text == "150 s" and not shown["boot_window"].assumed
    assert shown["read_fraction"].text == "84 %"
    disk = {f.key: f for f in load_preset("midrange-2012").figures}["disk_iops"]
    assert disk.text == "180 IOPS" and disk.origin.startswith("15k rpm HDD") and disk.origin.endswith("(2012)")


def test_copy_renames_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from clonefleet.presets import copy_preset, preset_label

    dest = tmp_path / "my-array.toml"
    info = copy_preset("allflash-2024", dest, "my-array")
    assert (info.kind, info.name) == ("array", "my-array")
    assert load_array(dest).processor_iops == load_array("allflash-2024").processor_iops
    with pytest.raises(UsageError, match="exists; pass --force"):
        copy_preset("allflash-2024", dest, "other")
    assert copy_preset("midrange-2012", dest, force=True).name == "my-array"  # default: the file's stem
    same = tmp_path / "same.toml"
    copy_preset("allflash-2024", same, "allflash-2024")
    assert preset_label("array", str(same), "allflash-2024") == f"allflash-2024 (from {same}, not the shipped one)"
    assert preset_label("array", "allflash-2024", "allflash-2024") == "allflash-2024"
    assert preset_label("array", str(dest), "my-array") == "my-array"
