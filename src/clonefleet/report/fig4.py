"""The paper's Fig. 4 reproduced: capacity of each method as a fraction of full copies.

The paper (section 5) compares, for 1000 VMs from a 100 GB GI, the capacity
consumed by thin mirrors and snapshot clones against full copies ("normal"), for
virtual servers (Windows Server 2008) and virtual desktops (Windows 7), on a
configuration that meets every VM's performance requirement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clonefleet.planner import Plan, plan
from clonefleet.presets import load_array, load_fleet
from clonefleet.report.outputs import staged_outputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAPER_VMS = 1000
PAPER_ARRAY = "midrange-2012"
#: (key in fig4.json, label, fleet preset)
PAPER_CASES: tuple[tuple[str, str, str], ...] = (
    ("server", "virtual servers (Windows Server 2008)", "server-ws2008"),
    ("desktop", "virtual desktops (Windows 7)", "desktop-win7"),
)


@dataclass(frozen=True)
class Fig4Case:
    key: str
    label: str
    plan: Plan
    ratios: dict[str, float]  # method -> S / S_full


@dataclass(frozen=True)
class Fig4Result:
    cases: tuple[Fig4Case, ...]
    files: tuple[Path, ...] = field(default=())

    def figure_data(self) -> dict[str, dict[str, float]]:
        """The content of fig4.json: ``{"server": {"thin": r, "snapshot": r}, "desktop": {...}}``."""
        return {c.key: {"thin": c.ratios["thin"], "snapshot": c.ratios["snapshot"]} for c in self.cases}

    def to_dict(self) -> dict[str, object]:
        return {
            "fig4": self.figure_data(),
            "plans": {c.key: c.plan.to_dict() for c in self.cases},
            "files": [str(p) for p in self.files],
        }


def compute_fig4(vms: int = PAPER_VMS, array: str = PAPER_ARRAY) -> Fig4Result:
    """Plan both paper fleets with full, thin and snapshot; ratios of S to full copies."""
    cases = []
    for key, label, fleet_name in PAPER_CASES:
        result = plan(load_fleet(fleet_name), load_array(array), vms, ["full", "thin", "snapshot"])
        ratios = {m.method: m.capacity_ratio for m in result.methods if m.capacity_ratio is not None}
        cases.append(Fig4Case(key, label, result, ratios))
    return Fig4Result(tuple(cases))


def fig4_figure(result: Fig4Result) -> Figure:
    """Grouped bars of S / S_full per method, on a log scale so 0.1 % and 100 % both show; each bar
    labelled with its percentage and its absolute capacity S [TiB]. The caller saves or closes it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    methods = ("full", "thin", "snapshot")
    colours = {"full": "#9e9e9e", "thin": "#1f77b4", "snapshot": "#d62728"}
    fig = Figure(figsize=(8.0, 5.0), dpi=120)
    ax = fig.subplots()
    width = 0.26
    for i, method in enumerate(methods):
        xs = [j + (i - 1) * width for j in range(len(result.cases))]
        values = [100 * c.ratios[method] for c in result.cases]
        tib = [_consumed_tib(c, method) for c in result.cases]
        bars = ax.bar(xs, values, width, label=method, color=colours[method])
        for bar, v, t in zip(bars, values, tib, strict=True):
            ax.annotate(f"{v:.2f} %\n{t:,.2f} TiB", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=7.5, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_ylim(0.03, 600)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.axhline(1.0, color="#555", lw=0.9, ls="--", label="1 % of full copies")
    ax.axhline(2.0, color="#555", lw=0.9, ls=":", label="2 % of full copies")
    ax.set_xticks(range(len(result.cases)), [c.label for c in result.cases])
    ax.set_ylabel("consumed capacity S, % of full copies (log)")
    ax.set_xlabel(f"fleet ({PAPER_VMS} VMs each); bar labels: % of full copies and S [TiB]")
    ax.set_title(f"Fig. 4 reproduced: {PAPER_VMS} VMs, 100 GB golden image, {PAPER_ARRAY}")
    ax.legend(loc="upper right", fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


def _consumed_tib(case: Fig4Case, method: str) -> float:
    s = case.plan.method(method).consumed_bytes
    return float("nan") if s is None else s / 2**40


def plot_fig4(result: Fig4Result, png: Path, svg: Path) -> None:
    """Write :func:`fig4_figure` as PNG and SVG."""
    fig = fig4_figure(result)
    fig.savefig(png)
    fig.savefig(svg)


def reproduce_fig4(out_dir: Path) -> Fig4Result:
    """Compute Fig. 4 and write fig4.png, fig4.svg and fig4.json into ``out_dir``."""
    result = compute_fig4()
    names = ("fig4.png", "fig4.svg", "fig4.json")
    with staged_outputs(out_dir, names) as staged:
        plot_fig4(result, staged["fig4.png"], staged["fig4.svg"])
        staged["fig4.json"].write_text(json.dumps(result.figure_data(), indent=2) + "\n", encoding="utf-8")
    return Fig4Result(result.cases, tuple(out_dir / name for name in names))
