"""clonefleet report: writes one file, says where; bad input is one line and exit 2, nothing written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult

Cli = Callable[..., CliResult]
BASE = ("report", "--fleet", "desktop-win7", "--array", "midrange-2012", "--vms", "1000", "--no-simulate")


def one_line_error(r: CliResult, *fragments: str) -> None:
    assert r.code == 2, (r.code, r.out, r.err)
    assert r.err.count("\n") == 1 and r.err.startswith("clonefleet: error: "), r.err
    assert "Traceback" not in r.err + r.out
    for fragment in fragments:
        assert fragment in r.err, r.err


def test_report_writes_html_and_markdown_and_says_where(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    r = cli(*BASE, "-o", str(out))
    assert r.code == 0, r.err
    assert r.out.strip() == f"recommended: snapshot; wrote {out}"
    assert out.read_text().startswith("<!DOCTYPE html>")
    r = cli(*BASE, "-o", str(tmp_path / "r.md"), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"wrote": str(tmp_path / "r.md"), "format": "md", "recommended": "snapshot",
                                 "vms": 1000, "fleet": "desktop-win7", "array": "midrange-2012"}
    assert (tmp_path / "r.md").read_text().startswith("<!-- clonefleet report")
    r = cli(*BASE, "-o", str(tmp_path / "r.txt"), "--format", "md")
    assert r.code == 0 and (tmp_path / "r.txt").read_text().startswith("<!-- clonefleet report")


def test_a_figure_alone_is_the_command_the_report_names(cli: Cli, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    assert cli(*BASE, "-o", str(html)).code == 0
    text = html.read_text()
    assert ("clonefleet report --fleet desktop-win7 --array midrange-2012 --vms 1000 --functions "
            "full,thin,snapshot --figure capacity -o capacity.svg") in text
    r = cli(*BASE[:-1], "--functions", "full,thin,snapshot", "--figure", "capacity", "-o", str(tmp_path / "c.svg"))
    assert r.code == 0, r.err
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()


@pytest.mark.parametrize(("args", "fragments"), [
    (("report", "nope.toml", "-o", "{tmp}/r.html"), ("manifest", "nope.toml")),
    (("report", "-o", "{tmp}/r.html"), ("give a MANIFEST, or --fleet and --array",)),
    (("report", "m.toml", "--fleet", "desktop-win7", "-o", "{tmp}/r.html"), ("not both",)),
    ((*BASE, "-o", "{tmp}"), ("is a folder",)),
    ((*BASE, "-o", "{tmp}/r.html", "--format", "pdf"), ("--format = 'pdf': one of html, md",)),
    ((*BASE, "-o", "{tmp}/r.svg", "--figure", "pie"), ("--figure = 'pie'",)),
    ((*BASE, "-o", "{tmp}/r.html", "--storm", "x.json"), ("--storm: only with a MANIFEST",)),
    (("report", "--fleet", "no-such", "--array", "midrange-2012", "-o", "{tmp}/r.html"), ("unknown fleet preset",)),
    ((*BASE, "-o", "{tmp}/no/such/r.html"), ("no folder",)),
    ((*BASE, "-o", "{tmp}/r.html", "--vms", "0"), ("--vms",)),
])
def test_bad_input_is_one_line_and_writes_nothing(cli: Cli, tmp_path: Path, args: tuple[str, ...],
                                                  fragments: tuple[str, ...]) -> None:
    r = cli(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    one_line_error(r, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_kept_unless_ours_and_forced(cli: Cli, tmp_path: Path) -> None:
    mine = tmp_path / "report.html"
    mine.write_text("<html>my own page</html>")
    one_line_error(cli(*BASE, "-o", str(mine)), "exists; pass --force")
    one_line_error(cli(*BASE, "-o", str(mine), "--force"), "clonefleet report did not write it")
    assert mine.read_text() == "<html>my own page</html>"
    ours = tmp_path / "ours.html"
    assert cli(*BASE, "-o", str(ours)).code == 0
    one_line_error(cli(*BASE, "-o", str(ours)), "exists; pass --force")
    before = ours.stat().st_mtime_ns
    assert cli(*BASE, "-o", str(ours), "--force").code == 0
    assert ours.stat().st_mtime_ns >= before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.html", "report.html"]
