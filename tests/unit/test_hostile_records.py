"""Hostile numbers in every field of every preset kind and of the manifest: one line and exit 2,
or a valid run whose printed numbers are finite. Then each fixed case on its own."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clonefleet.errors import UsageError
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.presets.schema import SPECS
from clonefleet.provision.manifest import _SECTIONS, load_manifest
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.trace import generate_trace
from conftest import CliResult

Cli = Callable[..., CliResult]
SHIPPED = Path(__file__).resolve().parents[2] / "src" / "clonefleet" / "presets"
NOT_FINITE = re.compile(r"\b(inf|nan)\b", re.IGNORECASE)

# --- TOML text of any value hypothesis draws ---------------------------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise AssertionError(type(value))


FOUR_HUNDRED_DIGITS = 10**399 + 7
HOSTILE = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, -0.0, -1.0, 0.5, 1e300, -1e300, 5e-324, 1e-320, 1e-310,
                     2.0**62, 2.0**63, 1e12, 1e13]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([FOUR_HUNDRED_DIGITS, -FOUR_HUNDRED_DIGITS, 0, 1, -1, 2**62, 2**62 + 1, 2**63, 10**9 + 1]),
    st.sampled_from(["inf", "nan", "-inf", "1e400", "1e400 GiB", "1e300 B", "-5 GiB", "1e-320 s", "1e-320",
                     "nan s", "inf PiB", "", "many", "0", "0 s", "4 EiB", "1 PiB", "9" * 400 + " B"]),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2),
)


def _with_value(text: str, key: str, value: object, figure: bool) -> str:
    """The preset text with ``key``'s value replaced (a figure table's ``value``, or a plain key)."""
    if figure:
        pattern = re.compile(rf"(^\[{re.escape(key)}\]\n(?:.*\n)*?)value = .*$", re.MULTILINE)
        if pattern.search(text):
            return pattern.sub(lambda m: m.group(1) + f"value = {toml_value(value)}", text, count=1)
        return text + f"\n[{key}]\nvalue = {toml_value(value)}\nassumption = \"a hostile test\"\n"
    line = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    if line.search(text):
        return line.sub(f"{key} = {toml_value(value)}", text, count=1)
    return f"{key} = {toml_value(value)}\n" + text


def assert_one_line_or_finite(r: CliResult) -> None:
    if r.code == 2:
        assert r.err.count("\n") == 1 and r.err.startswith("clonefleet: error: "), r.err
        assert "Traceback" not in r.err and "internal error" not in r.err and r.out == "", r.err
    else:
        assert r.code == 0, r.err
        assert not NOT_FINITE.search(r.out), r.out


# --- every field of every preset kind ----------------------------------------------------------

PRESETS = {"fleet": "desktop-win7", "array": "midrange-2012", "function": "snapshot"}
# boot_window replaces host_iops in a file (give one of them); the test swaps them together.
FIELDS = [(kind, spec.key, spec.is_figure) for kind, specs in SPECS.items() for spec in specs]


def _plan_args(kind: str, path: Path) -> list[str]:
    args = {"fleet": "desktop-win7", "array": "midrange-2012", "function": "full,thin,snapshot"}
    args[kind] = str(path)
    return ["plan", "--fleet", args["fleet"], "--array", args["array"], "--functions", args["function"],
            "--vms", "1000"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=HOSTILE)
def test_hostile_value_in_any_preset_field_is_one_line_or_a_finite_plan(
    cli: Cli, tmp_path: Path, field: tuple[str, str, bool], value: object
) -> None:
    kind, key, figure = field
    text = (SHIPPED / f"{kind}s" / f"{PRESETS[kind]}.toml").read_text()
    if key == "boot_window":  # one of host_iops and boot_window
        text = re.sub(r"^\[host_iops\]\n(?:.+\n)*", "", text, flags=re.MULTILINE)
    path = tmp_path / f"hostile-{kind}.toml"
    path.write_text(_with_value(text, key, value, figure))
    assert_one_line_or_finite(cli(*_plan_args(kind, path)))


# --- every field of the manifest ----------------------------------------------------------------

MANIFEST_FIELDS = [(section, key) for section, keys in _SECTIONS.items() for key in keys]


def _manifest_text(section: str, key: str, value: object) -> str:
    tables: dict[str, dict[str, object]] = {
        "fleet": {"count": 4, "dest": "clones"}, "golden_image": {"path": "gi.qcow2"}, "clones": {}, "writes": {},
        "rbd": {}}
    tables[section][key] = value
    return "\n".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
                     for name, table in tables.items())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(MANIFEST_FIELDS), value=HOSTILE)
def test_hostile_value_in_any_manifest_field_is_one_line_and_exit_2(
    cli: Cli, tmp_path: Path, field: tuple[str, str], value: object
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(_manifest_text(*field, value))
    gi = tmp_path / "gi.qcow2"  # a real image (raw bytes: the format is read from them), so a valid
    if not gi.exists():  # manifest's status goes past the GI to the fleet, which is not made yet
        gi.write_bytes(b"\x01" * 65536)
    try:
        manifest = load_manifest(path)
    except UsageError as exc:
        refused = exc.message
    else:
        refused = ""
        for attr in ("count", "gi_bytes", "max_chain_depth", "golden_images", "cluster_bytes", "workers"):
            number = getattr(manifest, attr)
            assert number is None or (isinstance(number, int) and 0 < number < 2**63), (attr, number)
        for attr in ("seed", "write_bytes", "write_extents", "span_bytes", "span_start_bytes"):
            number = getattr(manifest.writes, attr)
            assert number is None or (isinstance(number, int) and 0 <= number < 2**63), (attr, number)
    r = cli("status", str(path))
    assert "Traceback" not in r.out + r.err
    if refused:
        assert r.code == 2 and refused in r.err and r.err.count("\n") == 1 and r.err.startswith("clonefleet: error: ")
    else:  # a valid manifest: a status report (nothing provisioned: not in sync), or one line for what the
        # manifest asks of the GI and the storage (a checksum it does not have, a chain too deep, no g)
        one_line = r.err.count("\n") == 1 and r.err.startswith("clonefleet: error: ")
        assert r.code in (1, 2) and (one_line or (r.err == "" and "NOT in sync" in r.out)), (r.code, r.err)


# --- the fixed cases, one by one: each would fail on the code before the records ---------------


def _user_preset(tmp_path: Path, kind: str, key: str, value: object) -> Path:
    text = (SHIPPED / f"{kind}s" / f"{PRESETS[kind]}.toml").read_text()
    path = tmp_path / f"my-{kind}.toml"
    path.write_text(_with_value(text, key, value, True))
    return path


@pytest.mark.parametrize(("kind", "key", "value", "expected"), [
    ("fleet", "host_iops", math.inf, "field 'host_iops' = inf: a rate from 1e-6 to 1e12 IOPS"),
    ("fleet", "host_iops", math.nan, "field 'host_iops' = nan: a rate"),
    ("fleet", "host_iops", 1e-320, "field 'host_iops' = 1e-320: a rate from 1e-6"),
    ("fleet", "gi_size", "1e300 B", "field 'gi_size' = '1e300 B': a size from 0 B to 4 EiB"),
    ("fleet", "gi_size", 1e300, "field 'gi_size' = 1e+300: a size from 1 B to 4 EiB"),
    ("fleet", "boot_ios", 1e300, "field 'boot_ios' = 1e+300: a number greater than 0, from 1e-6 to 1e12"),
    ("array", "disks", FOUR_HUNDRED_DIGITS, "field 'disks' = 1000000000000000000000"),
    ("array", "cache_size", "-5 GiB", "field 'cache_size' = '-5 GiB': a size from 0 B to 4 EiB"),
    ("function", "max_clones_per_gi", FOUR_HUNDRED_DIGITS, "field 'max_clones_per_gi' = 10000"),
    ("function", "unit", "inf PiB", "field 'unit' = 'inf PiB': not a number with a unit"),
    ("function", "unit", "1e400 KiB", "field 'unit' = '1e400 KiB': a finite size"),
])
def test_hostile_preset_values_are_one_line_naming_the_field(
    cli: Cli, tmp_path: Path, kind: str, key: str, value: object, expected: str
) -> None:
    path = _user_preset(tmp_path, kind, key, value)
    r = cli(*_plan_args(kind, path))
    assert r.code == 2, r.out
    assert r.err.startswith(f"clonefleet: error: {kind} file '{path}': ") and expected in r.err, r.err
    assert r.err.count("\n") == 1


def test_a_subnormal_boot_window_is_refused_by_its_floor(tmp_path: Path) -> None:
    text = (SHIPPED / "fleets" / "desktop-win7.toml").read_text()
    text = re.sub(r"^\[host_iops\]\n(?:.+\n)*", "", text, flags=re.MULTILINE)
    path = tmp_path / "w.toml"
    path.write_text(text + '\n[boot_window]\nvalue = "1e-320 s"\nassumption = "x"\n')
    with pytest.raises(UsageError, match=r"field 'boot_window' = '1e-320 s': a duration of 0 or from 1 ns"):
        load_fleet(path)
    path.write_text(text + '\n[boot_window]\nvalue = "330 s"\nassumption = "x"\n')
    assert load_fleet(path).host_iops == pytest.approx(62000 / 330)


def test_records_refuse_a_bad_field_whoever_builds_them() -> None:
    fleet, array, fn = load_fleet("desktop-win7"), load_array("midrange-2012"), load_function("snapshot")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: dataclasses.replace(fleet, host_iops=math.inf), "fleet 'desktop-win7': field 'host_iops' = inf"),
        (lambda: dataclasses.replace(fleet, gi_used_bytes=2.0**70), "field 'gi_used' = 1.1805916207174113e+21"),
        (lambda: dataclasses.replace(fleet, read_fraction=math.nan), "field 'read_fraction' = nan"),
        (lambda: dataclasses.replace(fleet, boot_write_bytes=1.4e-315), "a size of 0 or from 1 B to 4 EiB"),
        (lambda: dataclasses.replace(fleet, queue_depth=True), "field 'queue_depth' = True"),
        (lambda: dataclasses.replace(fleet, gi_used_bytes=fleet.gi_virtual_bytes * 2), "at most gi_size"),
        (lambda: dataclasses.replace(array, disks=np.array([[10.0, -1.0]])), "field 'disks' = array"),
        (lambda: dataclasses.replace(array, cache_hit_shared="0.5"), "field 'cache_hit_shared' = '0.5'"),
        (lambda: dataclasses.replace(fn, method="linked"), "field 'method' = 'linked': one of full, thin, snapshot"),
        (lambda: dataclasses.replace(fn, unit_bytes=[4096]), "field 'unit' = [4096]"),
        (lambda: dataclasses.replace(fn, max_clones_per_gi=2.5), "or inf for no limit"),
    ]
    for build, expected in cases:
        with pytest.raises(UsageError) as info:
            build()
        assert expected in info.value.message and "\n" not in info.value.message
    # numbers in bounds and arrays of them still make records: the model broadcasts over a sweep
    assert dataclasses.replace(array, disks=np.array([[100.0, 480.0]])).disks.shape == (1, 2)
    assert dataclasses.replace(fn, max_clones_per_gi=math.inf).max_clones_per_gi == math.inf


def test_the_scenario_validates_its_scalars() -> None:
    fleet, array, thin = load_fleet("server-ws2008"), load_array("midrange-2012"), load_function("thin")
    sc = build_scenario(generate_trace(fleet, 3, np.random.default_rng(0), ios_per_vm=20), fleet, array, thin)
    for change, expected in [({"golden_images": 0}, "golden_images' = 0"),
                             ({"util_bin_s": 1e-320}, "util_bin_s' = 1e-320: a time from 1 ns"),
                             ({"util_bin_s": math.inf}, "util_bin_s' = inf"),
                             ({"seed": -1}, "seed' = -1"),
                             ({"queue_depth": FOUR_HUNDRED_DIGITS}, "queue_depth' = 1000")]:
        with pytest.raises(UsageError, match=re.escape(expected)):
            dataclasses.replace(sc, **change)
    with pytest.raises(UsageError, match="field 'vms' = inf"):
        build_scenario(sc.trace, fleet, array, thin, vms=math.inf)  # type: ignore[arg-type]


BASE_MANIFEST: dict[str, dict[str, Any]] = {"fleet": {"count": 4, "dest": "clones"},
                                             "golden_image": {"path": "gi.qcow2"}}


@pytest.mark.parametrize(("section", "values", "expected"), [
    ("clones", {"golden_images": 5}, "field 'clones.golden_images' = 5: at most fleet.count (4)"),
    ("writes", {"bytes": "2 MiB", "span": "1 MiB"}, "field 'writes.bytes' = 2097152: at most writes.span"),
    ("writes", {"bytes": "1e300 B"}, "field 'writes.bytes' = '1e300 B': a size from 0 B to 4 EiB"),
    ("writes", {"span": math.inf}, "field 'writes.span' = inf: a finite size"),
    ("writes", {"extents": math.nan}, "field 'writes.extents' = nan: a whole number from 0 to 10,000,000"),
    ("writes", {"seed": FOUR_HUNDRED_DIGITS}, "field 'writes.seed' = 1000"),
    ("golden_image", {"bytes": 1e300}, "field 'golden_image.bytes' = 1e+300: a whole number"),
    ("clones", {"cluster_size": math.nan}, "field 'clones.cluster_size' = nan"),
    ("clones", {"workers": True}, "field 'clones.workers' = True: a whole number from 1 to 256"),
])
def test_hostile_manifest_values_are_one_line(
    cli: Cli, tmp_path: Path, section: str, values: dict[str, object], expected: str
) -> None:
    tables = {k: dict(v) for k, v in BASE_MANIFEST.items()}
    tables.setdefault(section, {}).update(values)
    path = tmp_path / "fleet.toml"
    path.write_text("\n".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
                              for name, table in tables.items()))
    r = cli("status", str(path))
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert r.err.startswith(f"clonefleet: error: manifest {path}: ") and expected in r.err, r.err


WHOLE_VMS = "a whole number from 1 to 1,000,000,000,000"


@pytest.mark.parametrize("command", ["plan", "simulate"])
@pytest.mark.parametrize(("args", "expected"), [
    (["--vms", "inf"], f"'inf': {WHOLE_VMS}"),
    (["--vms", "nan"], f"'nan': {WHOLE_VMS}"),
    (["--vms", "1e400"], f"'1e400': {WHOLE_VMS}"),
    (["--vms", "9" * 400], f"(400 characters): {WHOLE_VMS}"),
    (["--vms", "-0"], f"'-0': {WHOLE_VMS}"),
    (["--vms", "2.5"], f"'2.5': {WHOLE_VMS}"),
])
def test_cli_numbers_are_one_line_and_exit_2(cli: Cli, command: str, args: list[str], expected: str) -> None:
    r = cli(command, "-f", "desktop-win7", "-a", "midrange-2012", *args,
            *(["--method", "thin"] if command == "simulate" else []))
    assert r.code == 2 and r.err.count("\n") == 1 and expected in r.err, r.err
    assert "Invalid value for '--vms'" in r.err and r.out == ""


@pytest.mark.parametrize(("args", "expected"), [
    (["--seed", "-1"], "'-1': a whole number from 0 to 9,223,372,036,854,775,807"),
    (["--seed", "9" * 400], "(400 characters): a whole number from 0 to"),
    (["--ios-per-vm", "0"], "'0': a whole number from 1 to 1,000,000,000"),
    (["--queue-depth", "inf"], "'inf': a whole number from 1 to 1,000,000"),
    (["--golden-images", "1,2.5"], "--golden-images = '2.5': a whole number from 1 to"),
])
def test_every_whole_number_of_simulate_is_typed_and_bounded(cli: Cli, args: list[str], expected: str) -> None:
    r = cli("simulate", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "4", "-m", "snapshot", *args)
    assert r.code == 2 and r.err.count("\n") == 1 and expected in r.err, r.err


def test_the_fleet_size_flag_still_takes_what_it_took(cli: Cli) -> None:
    for text in ("1000", "1e3", "1_000", "1000.0"):
        r = cli("plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", text, "--json")
        assert r.code == 0 and json.loads(r.out)["vms"] == 1000, (text, r.err)
    r = cli("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:100", "--target", "1e3", "--json")
    assert r.code == 0, r.err


def test_gi_seed_of_400_digits_is_refused_before_anything_is_built(cli: Cli, tmp_path: Path) -> None:
    r = cli("gi", "build", "--out", str(tmp_path / "gi"), "--seed", "9" * 400)
    assert r.code == 2 and r.err.count("\n") == 1 and "is not in the range 0<=x<=9223372036854775807" in r.err
    assert not (tmp_path / "gi").exists()
    r = cli("gi", "build", "--out", str(tmp_path / "gi"), "--size", "1e300 B")
    assert r.code == 2 and "--size = '1e300 B': a size from 0 B to 4 EiB" in r.err


def test_the_paper_plan_prints_finite_numbers(cli: Cli) -> None:
    r = cli("plan", "--fleet", "desktop-win7", "--array", "midrange-2012", "--vms", "1000")
    assert r.code == 0 and "recommended" in r.out and not NOT_FINITE.search(r.out)


@given(st.one_of(st.integers(min_value=-(10**420), max_value=10**420).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.text(max_size=12)))
def test_a_whole_number_flag_takes_exactly_the_whole_numbers_in_its_bounds(text: str) -> None:
    from fractions import Fraction

    from clonefleet.cli.app import parse_whole

    try:
        exact: Fraction | None = Fraction(text.replace("_", "")) if text.strip() else None
    except (ValueError, ZeroDivisionError):
        exact = None
    try:
        got = parse_whole(text, "--n", 3, 10**12)
    except UsageError as exc:
        assert "--n = " in exc.message and "a whole number from 3 to 1,000,000,000,000" in exc.message
        assert exact is None or exact.denominator != 1 or not 3 <= exact <= 10**12
    else:
        assert exact is not None and exact == got and 3 <= got <= 10**12
