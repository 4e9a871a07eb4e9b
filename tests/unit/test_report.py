"""The report's library layer (clonefleet.report.build, .render, .writer): what it says, how it escapes, what
it refuses. The page in a real browser: tests/browser/test_report_browser.py."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.planner import plan
from clonefleet.presets import copy_preset, load_array, load_fleet
from clonefleet.report.build import (
    MIN_SIM_IOS_PER_VM,
    growth_of,
    report_from_manifest,
    report_from_presets,
    sim_ios_per_vm,
)
from clonefleet.report.render import CSP, Format, codeblock, md, render
from clonefleet.report.writer import Target, write, written_by_us

EVIL = "<script>alert(1)</script>"


class Page(HTMLParser):
    """Every tag with its attributes, and the text outside tags."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def desktop_report() -> str:
    return render(report_from_presets("desktop-win7", "midrange-2012", 1000, simulate=False), Format.HTML)


def test_the_page_loads_nothing_and_runs_nothing(desktop_report: str) -> None:
    page = Page(desktop_report)
    metas = [a for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert [m["content"] for m in metas] == [CSP] == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'"]
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed", "base")]
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "action"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/svg+xml;base64,", "#")), (tag, name, value[:60])
    assert not re.search(r"url\(", desktop_report)  # no CSS that fetches
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == 3  # capacity, growth and S over the fleet's life (no simulation asked)
    for src in images:
        svg = base64.b64decode(str(src).split(",", 1)[1]).decode()
        assert "<svg" in svg and "http://www.w3.org" in svg  # namespaces only, never fetched
        assert not re.search(r"(href|src)=\"https?:", svg) and "<text" not in svg  # text drawn as paths


def test_the_key_numbers_are_the_plans(desktop_report: str) -> None:
    p = plan(load_fleet("desktop-win7"), load_array("midrange-2012"), 1000).to_dict()
    page = Page(desktop_report)
    cells = {(a.get("data-field"), a.get("data-function")): a["data-value"] for _, a in page.tags
             if "data-value" in a and "data-function" in a}
    rows = {a["data-function"]: a for t, a in page.tags if t == "tr" and "data-function" in a}
    assert set(rows) == {"full", "thin", "snapshot"}
    assert cells[("consumed_bytes", "snapshot")] == repr(next(
        m["consumed_bytes"] for m in p["methods"] if m["function"] == "snapshot"))  # type: ignore[index]
    values = [(a["data-field"], a["data-value"]) for _, a in page.tags if a.get("data-field") == "consumed_bytes"]
    expected = [repr(m["consumed_bytes"]) for m in p["methods"]]  # type: ignore[index, attr-defined]
    assert [v for _, v in values][1:] == expected  # the answer's S, then the table's, row by row
    assert ('recommended' in desktop_report) and p["recommended"] == "snapshot"
    assert 'id="recommended" data-value="snapshot"' in desktop_report


def test_every_section_is_there_and_the_life_of_a_fleet_without_daily_writes_says_why_it_is_flat(
        desktop_report: str) -> None:
    for section in ("answer", "verify", "capacity", "growth", "lifetime", "simulation", "measured", "presets",
                    "reproduce"):
        assert f'id="{section}"' in desktop_report
    lifetime = desktop_report.split('id="lifetime"')[1].split("</section>")[0]
    # desktop-win7 declares no daily writes: S stays at its first-boot value, and the page says why
    assert "declares no daily writes" in lifetime and "<img" in lifetime and "90 days" in lifetime
    assert "clonefleet plan --fleet desktop-win7 --array midrange-2012 --vms" in lifetime and "--days 90" in lifetime
    assert "not simulated (--no-simulate)" in desktop_report
    # every figure: a caption with units and the command that draws it again
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", desktop_report, re.S)
    assert len(captions) == 3
    for caption in captions:
        assert re.search(r"\[(%|bytes|TiB|VMs|s)[^\]]*\]", caption) and "Reproduce: <code>clonefleet " in caption


def test_a_user_named_preset_and_path_are_text_everywhere(tmp_path: Path) -> None:
    folder = tmp_path / "x<i>y"
    folder.mkdir()
    fleet = folder / "evil.toml"
    copy_preset("desktop-win7", fleet, EVIL)
    report = report_from_presets(str(fleet), "midrange-2012", 100, simulate=False)
    html = render(report, Format.HTML)
    page = Page(html)
    assert not [t for t, _ in page.tags if t in ("script", "i")]
    assert EVIL in "".join(page.text)  # shown as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "x&lt;i&gt;y/evil.toml" in html
    text = render(report, Format.MARKDOWN)
    assert "<script>" not in text.split("```")[0] and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "x<i>y/evil.toml" in text  # inside a fenced command, where Markdown shows it verbatim


def test_markdown_escapes_and_fences() -> None:
    assert md("a|b*c_d`e[f]\\g\nh") == "a\\|b\\*c\\_d\\`e\\[f\\]\\\\g h"
    block = str(codeblock("echo ``` '<b>'"))
    assert block.startswith("````sh\n") and block.endswith("\n````")


def test_growth_holds_the_plan_at_the_asked_size() -> None:
    fleet, array = load_fleet("server-ws2008"), load_array("midrange-2012")
    from clonefleet.planner import resolve_functions

    functions = resolve_functions(None)
    g = growth_of(fleet, array, functions, 777)
    p = plan(fleet, array, 777)
    i = int(np.flatnonzero(g.vms == 777)[0])
    for m in p.methods:
        assert g.consumed_bytes[m.function][i] == pytest.approx(m.consumed_bytes)
        assert g.max_vms[m.function] == m.max_vms
        assert g.vms[-1] >= 2 * m.max_vms  # past every T_max: the requirement's end shows
    assert np.all(np.diff(g.vms) > 0)


def test_the_simulated_boot_is_shortened_to_the_budget() -> None:
    fleet = load_fleet("desktop-win7")  # 62,000 IOs per boot
    assert sim_ios_per_vm(fleet, 10, 2_000_000) is None  # the whole boot fits
    assert sim_ios_per_vm(fleet, 1000, 2_000_000) == 2000
    assert sim_ios_per_vm(fleet, 10**6, 2_000_000) == MIN_SIM_IOS_PER_VM


def test_a_report_with_a_simulated_storm_draws_and_names_it() -> None:
    report = report_from_presets("server-linux", "allflash-2024", 50, sim_budget_ios=20_000)
    sim = report.simulation
    assert sim.result is not None and sim.ios_per_vm == 400 and sim.result.scenario.vms == 50
    assert sim.function == report.plan.recommended
    assert "--ios-per-vm 400 --plots sim" in report.commands["simulation"]
    html = render(report, Format.HTML)
    assert html.count("<figure ") == 5 and 'data-field="boot_p95_s"' in html


@pytest.mark.parametrize(("name", "fmt", "figure", "message"), [
    ("r.html", "pdf", None, "--format = 'pdf': one of html, md"),
    ("r.svg", None, "nope", "--figure = 'nope': one of capacity, growth, comparison"),
    ("r.html", None, "capacity", "a figure is written to a .svg or .png file"),
    ("r.svg", "html", "capacity", "--format: not with --figure"),
    ("missing/r.html", None, None, "no folder"),
])
def test_targets_are_refused_in_one_line(tmp_path: Path, name: str, fmt: str | None, figure: str | None,
                                         message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        Target.of(tmp_path / name, fmt, figure, False)


def test_only_a_file_the_report_wrote_is_replaced(tmp_path: Path) -> None:
    report = report_from_presets("server-linux", "allflash-2024", 10, simulate=False)
    out = tmp_path / "r.md"
    assert Target.of(out, None, None, False).format is Format.MARKDOWN
    write(report, Target.of(out, None, None, False))
    assert written_by_us(out)
    with pytest.raises(UsageError, match="exists; pass --force"):
        Target.of(out, None, None, False)
    write(report, Target.of(out, None, None, True))  # ours: replaced
    foreign = tmp_path / "notes.md"
    foreign.write_text("my notes\n")
    with pytest.raises(UsageError, match="clonefleet report did not write it"):
        Target.of(foreign, None, None, True)
    assert foreign.read_text() == "my notes\n"
    with pytest.raises(UsageError, match="is a folder"):
        Target.of(tmp_path, None, None, True)
    svg = tmp_path / "c.svg"
    write(report, Target.of(svg, None, "capacity", False))
    assert svg.read_bytes().startswith(b"<?xml") and written_by_us(svg)
    png = tmp_path / "g.png"
    write(report, Target.of(png, None, "growth", False))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written_by_us(png)
    with pytest.raises(UsageError, match="no such figure"):
        write(report, Target.of(tmp_path / "cmp.svg", None, "comparison", False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.svg", "g.png", "notes.md", "r.md"]  # no temporaries


def test_a_manifest_without_a_provisioned_fleet_says_why_there_is_no_comparison(tmp_path: Path) -> None:
    from clonefleet.provision import write_manifest

    gi = tmp_path / "gi.qcow2"
    gi.write_bytes(b"\0" * 4096)
    manifest = tmp_path / "fleet.toml"
    write_manifest(manifest, {"fleet": {"name": "evil-fleet", "count": 3, "dest": "clones", "preset": "server-linux",
                                        "array": "allflash-2024"},
                              "golden_image": {"path": "gi.qcow2"}, "clones": {"method": "snapshot"}})
    storm = tmp_path / "storm-evil-fleet-20260101T000000.000Z.json"
    storm.write_text('{"kind": "clonefleet storm", "mode": "fio", "started_at": "2026-01-01T00:00:00Z", '
                     '"request": {"vms": 3}, "fleet_figures": {"vms": 3, "iops": 1234.5, "boot_s": {"p50": 1.0, '
                     '"p95": 2.0, "max": 3.0}, "allocated_bytes": 4096}}')
    report = report_from_manifest(manifest, simulate=False)
    assert report.fleet is not None and report.plan.vms == 3
    assert [s.iops for s in report.fleet.storms] == [1234.5]
    assert report.fleet.comparison is None and "not provisioned yet" in str(report.fleet.comparison_note)
    html = render(report, Format.HTML)
    assert 'id="storms-table"' in html and "1,234 IOPS" in html and "not provisioned yet" in html
