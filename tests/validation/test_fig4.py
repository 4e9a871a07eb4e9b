"""The paper's findings (section 5, Fig. 4) and the worked table of the project's model.

Expected numbers come from two places, named at each assertion:
- the paper (``shared/paper/summary-en.md``, section 5): servers, both functions at
  <= 1 % of full copies; desktops, snapshots at 1/5 of thin, both <= 2 %;
  conclusion (section 6): snapshots suit desktops.
- the worked result table of ``shared/design/model.md`` (g, T_max, C, S / S_full),
  computed by hand from the equations there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clonefleet import load_array, load_fleet, plan
from clonefleet.report.fig4 import compute_fig4, reproduce_fig4

MIB = 2**20


@pytest.fixture(scope="module")
def fig4() -> dict[str, dict[str, float]]:
    return compute_fig4().figure_data()


def test_servers_both_functions_at_most_one_percent(fig4: dict[str, dict[str, float]]) -> None:
    # Paper, section 5: "Virtual servers: both functions reach ... 1 % or less of normal."
    assert 0 < fig4["server"]["thin"] <= 0.01
    assert 0 < fig4["server"]["snapshot"] <= 0.01


def test_desktops_snapshot_is_one_fifth_of_thin(fig4: dict[str, dict[str, float]]) -> None:
    # Paper, section 5: "the snapshot function's capacity is 1/5 of the capacity virtualization's".
    ratio = fig4["desktop"]["snapshot"] / fig4["desktop"]["thin"]
    assert 0.15 <= ratio <= 0.25


def test_desktops_both_at_most_two_percent(fig4: dict[str, dict[str, float]]) -> None:
    # Paper, section 5: "both are at 2 % or less of normal".
    assert 0 < fig4["desktop"]["thin"] <= 0.02
    assert 0 < fig4["desktop"]["snapshot"] <= 0.02


def test_desktops_recommend_snapshot() -> None:
    # Paper, section 6: "for virtual desktops, snapshots suit".
    result = plan(load_fleet("desktop-win7"), load_array("midrange-2012"), 1000)
    assert result.recommended == "snapshot"
    assert all(m.meets_requirement for m in result.methods)


def test_servers_either_function_holds() -> None:
    # Paper, section 6: "for virtual servers, either capacity virtualization or snapshots suit".
    result = plan(load_fleet("server-ws2008"), load_array("midrange-2012"), 1000)
    assert result.method("thin").meets_requirement
    assert result.method("snapshot").meets_requirement


# model.md, "Worked result": (fleet, method, g, T_max, C [MiB], S / S_full [%]).
# T_max is printed rounded there (2687 for 2686.6); the operable count is its floor.
WORKED = [
    ("server-ws2008", "snapshot", 3, 5684, 56, 0.09),
    ("server-ws2008", "thin", 1, 2413, 630, 0.67),
    ("desktop-win7", "snapshot", 5, 2687, 207, 0.30),
    ("desktop-win7", "thin", 1, 1189, 1386, 1.47),
]


@pytest.mark.parametrize(("fleet", "method", "g", "t_max", "c_mib", "pct"), WORKED)
def test_worked_table_of_the_model(fleet: str, method: str, g: int, t_max: int, c_mib: float,
                                   pct: float) -> None:
    m = plan(load_fleet(fleet), load_array("midrange-2012"), 1000).method(method)
    assert m.golden_images == g
    assert abs(m.max_vms - t_max) <= 1
    assert m.per_vm_new_bytes / MIB == pytest.approx(c_mib, rel=0.01)
    assert 100 * m.capacity_ratio == pytest.approx(pct, abs=0.005)


def test_reproduce_writes_the_three_files(tmp_path: Path) -> None:
    result = reproduce_fig4(tmp_path / "fig")
    names = sorted(p.name for p in result.files)
    assert names == ["fig4.json", "fig4.png", "fig4.svg"]
    data = json.loads((tmp_path / "fig" / "fig4.json").read_text())
    assert set(data) == {"server", "desktop"}
    assert set(data["server"]) == {"thin", "snapshot"}
    assert data == compute_fig4().figure_data()
    assert (tmp_path / "fig" / "fig4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "fig" / "fig4.svg").read_bytes()[:2000]
