"""Golden tests: the planner's output for the paper's fleets, byte for byte.

The numbers in these files are checked against the paper and model.md by
tests/validation/test_fig4.py; this test catches any unintended change of format or
value. Regenerate deliberately with:
  clonefleet plan -f desktop-win7 -a midrange-2012 --json > tests/cli/golden/plan-desktop-win7.json
  clonefleet plan -f server-ws2008 -a midrange-2012 > tests/cli/golden/plan-server-ws2008.txt
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import CliResult

GOLDEN = Path(__file__).parent / "golden"


def test_plan_json_golden(cli: Callable[..., CliResult]) -> None:
    r = cli("plan", "-f", "desktop-win7", "-a", "midrange-2012", "--json")
    assert r.code == 0
    assert json.loads(r.out) == json.loads((GOLDEN / "plan-desktop-win7.json").read_text())


def test_plan_table_golden(cli: Callable[..., CliResult]) -> None:
    r = cli("plan", "-f", "server-ws2008", "-a", "midrange-2012")
    assert r.code == 0
    assert r.out == (GOLDEN / "plan-server-ws2008.txt").read_text()
