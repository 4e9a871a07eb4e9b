"""Golden tests: the planner's output for the paper's fleets and the 600-desktop question, byte for byte.

The numbers in these files are checked against the paper by tests/validation/test_fig4.py; these
tests catch any unintended change of format, value or layout. The plan's tables are laid out for
the width the user has (``COLUMNS``, the terminal, 80 when piped): at 80 columns the load table
takes short headers and a legend, at 200 everything has its full name. Regenerate deliberately:
  clonefleet plan -f desktop-win7 -a midrange-2012 --json > tests/cli/golden/plan-desktop-win7.json
  COLUMNS=W clonefleet plan -f F -a A [--vms T] > tests/cli/golden/plan-F-A[-T]-W.txt  (W = 80, 200)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult

GOLDEN = Path(__file__).parent / "golden"
SRC = Path(__file__).resolve().parents[2] / "src"
CASES = [("server-ws2008", "midrange-2012", None), ("desktop-win7", "midrange-2012", None),
         ("desktop-win11", "allflash-2024", "600")]


def test_plan_json_golden(cli: Callable[..., CliResult]) -> None:
    r = cli("plan", "-f", "desktop-win7", "-a", "midrange-2012", "--json")
    assert r.code == 0
    assert json.loads(r.out) == json.loads((GOLDEN / "plan-desktop-win7.json").read_text())


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize(("fleet", "array", "vms"), CASES)
def test_plan_table_golden(cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, columns: int,
                           fleet: str, array: str, vms: str | None) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    r = cli("plan", "-f", fleet, "-a", array, *(["--vms", vms] if vms else []))
    assert r.code == 0, r.err
    name = f"plan-{fleet}-{array}{'-' + vms if vms else ''}-{columns}.txt"
    assert r.out == (GOLDEN / name).read_text()
    assert max(len(line) for line in r.out.splitlines()) <= columns


def test_plan_tables_at_80_columns_abbreviate_with_a_legend_and_at_200_do_not() -> None:
    narrow = (GOLDEN / "plan-desktop-win7-midrange-2012-80.txt").read_text()
    wide = (GOLDEN / "plan-desktop-win7-midrange-2012-200.txt").read_text()
    assert "legend: arr proc = array processors" in narrow and "┃ arr proc ┃" in narrow
    assert "legend" not in wide and "┃ array processors ┃" in wide


def test_plan_piped_without_columns_is_80_wide() -> None:
    # A pipe, no COLUMNS: laid out for 80 columns (it used to be forced to 160).
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-m", "clonefleet", "plan", "-f", "desktop-win7", "-a", "midrange-2012"],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (GOLDEN / "plan-desktop-win7-midrange-2012-80.txt").read_text()


@pytest.mark.parametrize("columns", [40, 60])
def test_plan_narrower_than_its_tables_switches_to_a_vertical_layout(
        cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    r = cli("plan", "-f", "desktop-win7", "-a", "midrange-2012")
    assert r.code == 0, r.err
    assert "┃" not in r.out  # no table: one block per function
    assert "  array processors" in r.out and "  S / full" in r.out
    assert max(len(line) for line in r.out.splitlines()) <= columns
