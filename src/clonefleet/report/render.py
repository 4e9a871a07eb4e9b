"""A :class:`~clonefleet.report.build.Report` laid out for a person: one self-contained HTML file, or Markdown.

The HTML holds everything it shows: figures as SVG ``data:`` images, the style inline, no script, no font,
no link that loads anything; its Content-Security-Policy (:data:`CSP`) has the browser itself refuse any
request, so the page opens the same with no network. Templates are jinja2 with autoescaping on: a fleet
named ``<script>`` shows as text. Numbers are formatted here (bytes in binary units, shares in %), and the
HTML also carries each key figure's exact value in a ``data-value`` attribute, the value ``plan --json``
gives, for tools and tests to read.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import jinja2
import numpy as np
from markupsafe import Markup

from clonefleet.planner import RESOURCES, MethodPlan
from clonefleet.report.build import Report
from clonefleet.report.figures import MARKER, capacity_figure, growth_figure, svg_data_uri
from clonefleet.units import format_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The page may load nothing: images only from data: URIs, styles only inline, no script at all.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class Format(enum.StrEnum):
    HTML = "html"
    MARKDOWN = "md"


#: A file's suffix -> the format it gets when --format is not given.
SUFFIXES = {".html": Format.HTML, ".htm": Format.HTML, ".md": Format.MARKDOWN, ".markdown": Format.MARKDOWN}


@dataclass(frozen=True)
class ReportFigure:
    """One figure as the page shows it: a title, a caption saying what is drawn in which units, the command
    that draws it again."""

    key: str
    title: str
    caption: str
    command: str
    build: object  # () -> Figure, called only for HTML

    def figure(self) -> Figure:
        fig = self.build()  # type: ignore[operator]
        return fig  # type: ignore[no-any-return]


def figures_of_report(report: Report) -> list[ReportFigure]:
    """The report's figures in page order (the simulated storm's and the comparison's when there are)."""
    p, cmds = report.plan, report.commands
    out = [
        ReportFigure("capacity", "Capacity by method",
                     f"Consumed capacity S (Eq. 3) of {p.vms:,} VMs per storage function, as a share of full "
                     "copies on a log scale (the paper's Fig. 4 style). Each bar is labelled with S [% of full "
                     "copies] and S [bytes; KiB, MiB, GiB, TiB are powers of 1024].",
                     cmds["capacity"], lambda: capacity_figure(p)),
        ReportFigure("growth", "S and the requirement against fleet size",
                     "Top: consumed capacity S [TiB = 2^40 bytes] against the number of VMs T [VMs], both log "
                     "scales; bold while the array carries T (T <= T_max, Eq. 2), faint past it. Bottom: load of "
                     "the busiest resource [% of its capacity] against T: the requirement holds below the dashed "
                     "100 % line. The dash-dot line marks the T asked.",
                     cmds["growth"], lambda: growth_figure(report.growth, p.vms)),
    ]
    life = report.lifetime
    if life is not None:
        from clonefleet.report.lifefig import life_figure

        out.append(ReportFigure(
            "lifetime", "S over the fleet's life",
            f"Consumed capacity S [bytes, log scale; TiB = 2^40 bytes] of {p.vms:,} VMs per storage function against "
            f"the days of use after the first boot [days], clones never refreshed (each day adds the fleet's daily "
            "writes, by the occupancy law, up to the written span); a triangle marks each peak.",
            cmds["lifetime"], lambda: life_figure(life.fleet, life.array, life.plan)))
    sim = report.simulation.result
    if sim is not None:
        from clonefleet.sim.plots import boot_times_figure, utilisation_figure

        out += [
            ReportFigure("boot_times", "Simulated boot times",
                         f"Share of the {sim.scenario.vms:,} VMs booted [%] against the time since power-on "
                         "[s], one step per VM (an empirical CDF); dotted: the median, dash-dot: p95; dashed red: "
                         "the nominal window (a boot at the fleet's own IO rate, no queueing).",
                         cmds["simulation"], lambda: boot_times_figure(sim)),
            ReportFigure("utilisation", "Simulated resource utilisation",
                         "Busy share of each resource class [% of its servers' time] against the time since "
                         f"the storm began [s], in bins of {sim.util_bin_s:.2g} s.",
                         cmds["simulation"], lambda: utilisation_figure(sim)),
        ]
    cmp = report.fleet.comparison if report.fleet is not None else None
    if cmp is not None:
        from clonefleet.storm.plots import comparison_figure

        out.append(ReportFigure(
            "comparison", "Measured vs model",
            "Left: share of VMs booted [%] against boot time since power-on [s], measured (black) and simulated "
            "(orange), the model's boot time dotted. Right: each figure of the model and the simulation divided "
            "by the measurement [ratio, 1 = equal], with the band within 20 %.",
            cmds["compare"], lambda: comparison_figure(cmp)))
    return out


# --- number formatting (the page's one way to show each kind of number) ---------------------------------

def pct(x: float | None, decimals: int = 2) -> str:
    """A share as the plan's tables print it: ``0.30 %`` (two decimals), or ``-``."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.{decimals}f} %"


def signed(x: float | None) -> str:
    """A relative error as ``compare`` prints it: ``+3.2 %``, or ``-``."""
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.1f} %"


def seconds(x: float | None) -> str:
    """Seconds to three significant digits (milliseconds below 1 s), or ``-``."""
    if x is None or not math.isfinite(x):
        return "-"
    if 0 < x < 1:
        return f"{1000 * x:.3g} ms"
    return f"{x:,.3g} s" if x < 100 else f"{x:,.0f} s"


def iops(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:,.0f} IOPS"


def size(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else format_bytes(x)


def exact(x: object) -> str:
    """A value for a data-value attribute: as ``plan --json`` prints it (repr of the float)."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float | np.floating):
        return repr(float(x))
    return str(x)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def md(text: object) -> str:
    """Text for Markdown prose or a table cell: the characters Markdown acts on are backslash-escaped, line
    breaks become spaces. Autoescaping then turns ``<``, ``>`` and ``&`` into entities, which Markdown shows
    as the characters: no HTML a name carries is ever rendered by a wiki."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(1), s)


def codeblock(text: object) -> Markup:
    """A fenced Markdown code block holding ``text`` verbatim. Markdown shows a code block's content as it
    is (entities are not decoded there, HTML is not rendered), so it is not autoescaped; the fence is longer
    than any run of backticks in the text, so nothing in it can close the block."""
    s = str(text)
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return Markup(f"{fence}sh\n{s}\n{fence}")


#: The capacity table's column headers after the function's, in the order of :func:`capacity_cells`.
CAPACITY_LABELS = ("GIs g", "clones per GI", "C per VM", "per clone", "D (GIs)", "S", "S / full")


def capacity_cells(m: MethodPlan) -> list[tuple[str, str, str]]:
    """(json field, value shown, exact value) per column of the capacity table."""
    return [
        ("golden_images", f"{m.golden_images:,}", exact(m.golden_images)),
        ("clones_per_gi", f"{m.clones_per_gi:,}", exact(m.clones_per_gi)),
        ("per_vm_new_bytes", size(m.per_vm_new_bytes), exact(m.per_vm_new_bytes)),
        ("per_clone_bytes", size(m.per_clone_bytes), exact(m.per_clone_bytes)),
        ("gi_bytes", size(m.gi_bytes), exact(m.gi_bytes)),
        ("consumed_bytes", size(m.consumed_bytes), exact(m.consumed_bytes)),
        ("capacity_ratio", pct(m.capacity_ratio), exact(m.capacity_ratio)),
    ]


def load_cells(m: MethodPlan) -> list[tuple[str, str, str, bool]]:
    """(resource, busy share shown, exact value, is the bottleneck) per resource, then T_max and holds."""
    return [(r, pct(m.utilisation[r], 0), exact(m.utilisation[r]), r == m.bottleneck) for r in RESOURCES]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("clonefleet.report").joinpath("templates"))),
        autoescape=True,  # HTML and Markdown alike: a name's < & > " ' become entities
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(signed=signed, pct=pct, seconds=seconds, iops=iops, size=size, exact=exact, md=md,
                       codeblock=codeblock)
    env.globals.update(pct=pct, seconds=seconds, iops=iops, size=size)
    return env


def render(report: Report, fmt: Format) -> str:
    """The report as one HTML page or one Markdown document (text)."""
    figures = figures_of_report(report)
    images = {f.key: svg_data_uri(f.figure()) for f in figures} if fmt is Format.HTML else {}
    template = _environment().get_template("report.html.j2" if fmt is Format.HTML else "report.md.j2")
    return template.render(r=report, p=report.plan, figures=figures, images=images, csp=CSP, marker=MARKER,
                           capacity_cells=capacity_cells, load_cells=load_cells, resources=RESOURCES,
                           capacity_labels=CAPACITY_LABELS, zip=zip)


__all__ = ["CSP", "SUFFIXES", "Format", "ReportFigure", "figures_of_report", "render"]
