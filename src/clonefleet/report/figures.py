"""The report's own figures, and any figure as an inline SVG a self-contained page can hold.

- :func:`capacity_figure`: the paper's Fig. 4 style for one fleet: S per storage function as a share of
  full copies on a log scale, each bar labelled with its share and its absolute S;
- :func:`growth_figure`: S against the fleet size T (log-log), and the busiest resource's load against T
  with the 100 % line the requirement is (T <= T_max, Eq. 2);
- :func:`svg_data_uri`: a Figure as ``data:image/svg+xml;base64,...`` (text as paths: no font is fetched,
  no id of one figure can clash with another's on the page).

Builders return a matplotlib Figure (no pyplot, no global state); the caller renders or saves it.
"""

from __future__ import annotations

import base64
import io
import textwrap
from typing import TYPE_CHECKING

import numpy as np

from clonefleet.planner import MethodPlan, Plan
from clonefleet.units import format_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from clonefleet.report.build import Growth

#: Colours per method, as in the paper's Fig. 4 reproduction (clonefleet reproduce paper).
COLOURS = {"full": "#7f7f7f", "thin": "#1f77b4", "snapshot": "#d62728"}
#: Line styles per method: distinct where two methods' lines coincide (full and thin load the array alike).
LINE_STYLES: dict[str, dict[str, object]] = {
    "full": {"lw": 5.0, "alpha": 0.45, "ls": "-"},
    "thin": {"lw": 2.0, "ls": (0, (6, 3))},
    "snapshot": {"lw": 1.8, "ls": "-"},
}
#: Other storage functions of the same method get these in turn.
EXTRA_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
#: What every file the report writes carries, so that --force replaces only files clonefleet report made.
MARKER = "clonefleet report"
#: Saved SVGs carry no date and the same ids each run: a report written twice differs only in its text.
SVG_RC = {"svg.hashsalt": "clonefleet", "svg.fonttype": "path"}


def shortfall(m: MethodPlan, vms: int) -> str:
    """Why a method does not meet the requirement, in a few words (a bar's label)."""
    if m.max_vms < vms:
        return "T > T_max"
    if not m.boot_holds:
        return "a resource over its headroom target"
    return "outgrows the datastore"


def colours_for(functions: dict[str, str]) -> dict[str, str]:
    """A colour per storage function (name -> method): the method's own for the first of each method."""
    taken: set[str] = set()
    extra = iter(EXTRA_COLOURS * 4)
    out = {}
    for name, method in functions.items():
        if method in COLOURS and method not in taken:
            out[name] = COLOURS[method]
            taken.add(method)
        else:
            out[name] = next(extra)
    return out


def capacity_figure(p: Plan) -> Figure:
    """S / S of full copies per storage function, log scale, each bar labelled with % and absolute S."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    methods = [m for m in p.methods]
    colours = colours_for({m.function: m.method for m in methods})
    fig = Figure(figsize=(7.0, 4.3), dpi=100)
    ax = fig.subplots()
    xs = np.arange(len(methods))
    shares = [100 * m.capacity_ratio if m.capacity_ratio is not None else np.nan for m in methods]
    bars = ax.bar(xs, shares, 0.6, color=[colours[m.function] for m in methods])
    for bar, m, share in zip(bars, methods, shares, strict=True):
        if m.consumed_bytes is None:
            ax.annotate("no GI count\ncarries a clone", (bar.get_x() + bar.get_width() / 2, 0.05), ha="center",
                        va="bottom", fontsize=8)
            continue
        holds = "" if m.meets_requirement else "\n" + textwrap.fill(f"fails: {shortfall(m, p.vms)}", 22)
        ax.annotate(f"{share:.2f} %\n{format_bytes(m.consumed_bytes)}{holds}",
                    (bar.get_x() + bar.get_width() / 2, share), ha="center", va="bottom", fontsize=8.5,
                    xytext=(0, 2), textcoords="offset points")
    finite = [s for s in shares if np.isfinite(s) and s > 0]
    low = min(finite) if finite else 1.0
    ax.set_yscale("log")
    ax.set_ylim(max(low / 8, 1e-6), 800)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.axhline(100, color="#555", lw=0.8, ls=":")
    labels = [m.function + (" *" if m.function == p.recommended else "") for m in methods]
    ax.set_xticks(xs, labels)
    ax.set_ylabel("consumed capacity S [% of full copies, log]")
    ax.set_xlabel("storage function (* recommended); bar label: S [% of full copies] and S [bytes, binary units]")
    ax.set_title(f"Capacity by method: {p.vms:,} VMs", fontsize=10)
    fig.tight_layout()
    return fig


def growth_figure(g: Growth, vms: int) -> Figure:
    """Top: S [bytes] against T, log-log, bold where T <= T_max, faint where the requirement fails.
    Bottom: the busiest resource's load [% of its capacity] against T; the requirement holds below 100 %."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    colours = colours_for(g.methods)
    fig = Figure(figsize=(7.0, 6.6), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for name in g.consumed_bytes:
        style = {"color": colours[name], **LINE_STYLES.get(g.methods[name], {"lw": 1.8})}
        s = g.consumed_bytes[name] / 2**40
        holds = g.vms <= g.max_vms[name]
        top.plot(g.vms, np.where(holds, s, np.nan), label=f"{name} (T_max {g.max_vms[name]:,})", **style)
        top.plot(g.vms, np.where(holds, np.nan, s), **{**style, "lw": 1.0, "alpha": 0.35})
        bottom.plot(g.vms, 100 * g.peak_load[name], label=name, **style)
    for ax in (top, bottom):
        ax.axvline(vms, color="black", lw=1, ls="-.")
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both", lw=0.5)
    top.set_yscale("log")
    top.set_ylabel("consumed capacity S [TiB, log]")
    top.set_title(f"S against fleet size (faint: requirement fails); dash-dot: T = {vms:,}", fontsize=10)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_yscale("log")
    bottom.axhline(100, color="tab:red", lw=1.2, ls="--", label="100 %: saturated (T = T_max)")
    bottom.set_ylabel("busiest resource [% busy, log]")
    bottom.set_xlabel("fleet size T [VMs, log]")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    bottom.set_title("The requirement: the busiest resource below 100 % while every VM boots", fontsize=10)
    bottom.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def svg_bytes(fig: Figure) -> bytes:
    """The figure as SVG: text drawn as paths (no fonts to fetch), no date, ids stable from run to run."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context(SVG_RC):  # type: ignore[arg-type]  # str keys, not matplotlib's Literal
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": MARKER})
    return buffer.getvalue()


def svg_data_uri(fig: Figure) -> str:
    """``data:image/svg+xml;base64,...``: an <img> the page holds itself (allowed by ``img-src data:``)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg_bytes(fig)).decode("ascii")


def figure_bytes(fig: Figure, suffix: str) -> bytes:
    """``fig`` as the file a ``suffix`` names: SVG for ``.svg`` (as the report holds it), else PNG."""
    if suffix.lower() == ".svg":
        return svg_bytes(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": MARKER})
    return buffer.getvalue()


__all__ = ["capacity_figure", "figure_bytes", "growth_figure", "svg_bytes", "svg_data_uri"]
