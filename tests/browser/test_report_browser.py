"""The report in a real browser: Debian's headless Chromium driven by selenium through chromium-driver.

Each page is opened from its file with the browser's console and network logs on. Checked: no console
error, no request leaving the file (the performance log's every request is the file itself or a data:
image), the key numbers on the page equal ``plan --json``, the page fits 1280 px and a 390 px phone
without scrolling sideways, and a fleet named ``<script>alert(1)</script>`` shows as text and runs
nothing. The CSP is shown to work: a page given an image from the network has it refused by the browser
itself. Screenshots go to ``$CLONEFLEET_ARTIFACTS`` (default ``out/test-artifacts`` in the repository,
which git ignores): report-1280.png, report-390.png, report-escaped-1280.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clonefleet.presets import copy_preset
from clonefleet.units import format_bytes
from conftest import CliResult
from helpers import require_tool

pytestmark = [pytest.mark.browser, pytest.mark.slow]

Cli = Callable[..., CliResult]
ROOT = Path(__file__).resolve().parents[2]
EVIL = "<script>alert(1)</script>"
CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"


def artifacts() -> Path:
    folder = Path(os.environ.get("CLONEFLEET_ARTIFACTS") or ROOT / "out" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Browser:
    """One headless Chromium: open a file, read its console and its requests, size it, screenshot it."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        options = Options()
        options.binary_location = str(shutil.which(CHROMIUM))
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--no-first-run", "--disable-extensions"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(str(shutil.which(CHROMEDRIVER))))

    def viewport(self, width: int, height: int = 900) -> None:
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def open(self, path: Path, width: int = 1280) -> None:
        self.driver.get_log("browser")  # drop what an earlier page logged
        self.driver.get_log("performance")
        self._events: list[dict[str, Any]] = []
        self.viewport(width)
        self.driver.get(path.resolve().as_uri())

    def console(self) -> list[dict[str, Any]]:
        return list(self.driver.get_log("browser"))

    def network(self) -> list[dict[str, Any]]:
        """The page's network events since it opened (the performance log's Network.* messages)."""
        self._events += [m for m in (json.loads(e["message"])["message"] for e in self.driver.get_log("performance"))
                         if str(m.get("method", "")).startswith("Network.")]
        return self._events

    def requests(self) -> list[str]:
        """The URL of every request the page set out to make (Network.requestWillBeSent), blocked or not."""
        return [m["params"]["request"]["url"] for m in self.network() if m["method"] == "Network.requestWillBeSent"]

    def js(self, script: str) -> Any:
        return self.driver.execute_script(script)

    def screenshot(self, name: str, width: int) -> Path:
        """The whole page at ``width`` px as artifacts()/name."""
        height = int(self.js("return document.documentElement.scrollHeight"))
        self.viewport(width, min(height, 20000))
        out = artifacts() / name
        self.driver.save_screenshot(str(out))
        self.viewport(width)
        return out

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_tool(CHROMIUM, CHROMEDRIVER)
    b = Browser()
    yield b
    b.quit()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clonefleet.cli import main

    out = tmp_path_factory.mktemp("report") / "report.html"
    main(["report", "--fleet", "desktop-win7", "--array", "midrange-2012", "--vms", "1000", "-o", str(out)])
    return out


def errors_in(console: list[dict[str, Any]]) -> list[str]:
    return [str(e["message"]) for e in console if e.get("level") in ("SEVERE", "ERROR")]


def assert_loads_nothing(browser: Browser, page: Path) -> None:
    own = page.resolve().as_uri()
    outside = [u for u in browser.requests() if u != own and not u.startswith("data:")]
    assert outside == []


def test_the_report_opens_with_no_error_no_request_and_the_plans_numbers(browser: Browser, report_file: Path,
                                                                         cli: Cli) -> None:
    browser.open(report_file)
    assert errors_in(browser.console()) == []
    assert_loads_nothing(browser, report_file)
    csp = browser.js("return document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content")
    assert csp == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    # every figure drew: an image the browser decoded, with a caption saying its units and its command
    sizes = browser.js("return [...document.images].map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) == 5 and all(done and width > 0 for done, width in sizes)
    captions = browser.js("return [...document.querySelectorAll('figure figcaption')].map(c => c.innerText)")
    assert len(captions) == 5
    for caption in captions:
        assert re.search(r"\[(%|s|TiB|VMs|bytes)[^\]]*\]", caption) and "Reproduce: clonefleet " in caption
    # the key numbers: what plan --json says, as values and as the text a person reads
    r = cli("plan", "--fleet", "desktop-win7", "--array", "midrange-2012", "--vms", "1000", "--json")
    p = json.loads(r.out)
    assert browser.js("return document.getElementById('recommended').textContent") == p["recommended"]
    for m in p["methods"]:
        row = f"#capacity-table tr[data-function='{m['function']}']"
        cells = browser.js(f"return Object.fromEntries([...document.querySelectorAll(\"{row} td[data-field]\")]"
                           ".map(td => [td.dataset.field, [td.dataset.value, td.textContent]]))")
        for field in ("consumed_bytes", "gi_bytes", "per_vm_new_bytes", "per_clone_bytes"):
            assert cells[field] == [repr(m[field]), format_bytes(m[field])], field
        assert cells["golden_images"] == [str(m["golden_images"]), f"{m['golden_images']:,}"]
        assert cells["capacity_ratio"] == [repr(m["capacity_ratio"]), f"{100 * m['capacity_ratio']:.2f} %"]
        t_max = browser.js(f"return document.querySelector(\"#load-table tr[data-function='{m['function']}'] "
                           "td[data-field=max_vms]\").textContent")
        assert t_max == f"{m['max_vms']:,}"
    best = next(m for m in p["methods"] if m["function"] == p["recommended"])
    answer = browser.js("return document.getElementById('answer').innerText")
    assert format_bytes(best["consumed_bytes"]) in answer and f"{best['max_vms']:,}" in answer


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_fits_the_screen_and_is_kept_as_a_screenshot(browser: Browser, report_file: Path,
                                                                width: int) -> None:
    browser.open(report_file, width)
    page_width = browser.js("return document.documentElement.scrollWidth")
    assert page_width <= width  # no sideways scrolling of the page (wide figures scroll in their own box)
    font = browser.js("return parseFloat(getComputedStyle(document.querySelector('main p')).fontSize)")
    assert font >= 14
    shot = browser.screenshot(f"report-{width}.png", width)
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert errors_in(browser.console()) == []


def test_a_hostile_fleet_name_shows_as_text_and_runs_nothing(browser: Browser, tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "a<b>c"
    folder.mkdir()
    preset = folder / "evil.toml"
    copy_preset("desktop-win7", preset, EVIL)
    text = preset.read_text().replace('description = "', 'description = "<img src=x onerror=alert(2)> ', 1)
    preset.write_text(text)
    out = tmp_path / "escaped.html"
    r = cli("report", "--fleet", str(preset), "--array", "midrange-2012", "--vms", "100", "--no-simulate",
            "-o", str(out))
    assert r.code == 0, r.err
    browser.open(out)
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.driver.switch_to.alert.text  # noqa: B018  (no alert() ran)
    assert browser.js("return document.scripts.length") == 0
    assert browser.js("return document.querySelectorAll('b img, img[src=x], a b').length") == 0
    assert EVIL in browser.js("return document.querySelector('h1').textContent")
    assert EVIL in browser.driver.title
    body = browser.js("return document.body.innerText")
    assert "<img src=x onerror=alert(2)>" in body and "a<b>c/evil.toml" in body
    assert errors_in(browser.console()) == []  # a script the CSP refused would be logged here
    assert_loads_nothing(browser, out)
    browser.screenshot("report-escaped-1280.png", 1280)


def test_the_pages_policy_has_the_browser_refuse_a_request(browser: Browser, report_file: Path,
                                                           tmp_path: Path) -> None:
    # the guard behind the checks above: had the page held a link to the network, Chromium would refuse it
    page = tmp_path / "leaky.html"
    page.write_text(report_file.read_text().replace("<main>", '<main><img id="leak" src="http://127.0.0.1:9/x.png">',
                                                    1))
    browser.open(page)
    refused = [m for m in errors_in(browser.console()) if "Content Security Policy" in m and "127.0.0.1:9" in m]
    assert refused, browser.console()
    # Chromium announces the request, then fails it itself with blockedReason csp: it never reaches the wire
    ids = {m["params"]["requestId"] for m in browser.network() if m["method"] == "Network.requestWillBeSent"
           and m["params"]["request"]["url"].startswith("http://127.0.0.1:9/")}
    assert len(ids) == 1
    fates = {(m["method"], m["params"].get("blockedReason")) for m in browser.network()
             if m["params"].get("requestId") in ids and m["method"] != "Network.requestWillBeSent"}
    assert ("Network.loadingFailed", "csp") in fates
    assert not [f for f in fates if f[0] in ("Network.responseReceived", "Network.loadingFinished")]
    with pytest.raises(AssertionError):  # and the check every report page passes catches it
        assert_loads_nothing(browser, page)
