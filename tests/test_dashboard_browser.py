"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

No browser is downloaded: the test uses /usr/bin/chromium (installed by .ci/run) and is
skipped, with the reason, when it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_helpers import MANY, cached_run

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed at /usr/bin/chromium "
                                                               "(apt-get install -y chromium; .ci/run does this)")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _dashboard(tmp_path_factory, M: int) -> tuple[Path, dict]:
    from crosstime.report import EvidenceConfig, ReportConfig, report

    run, _ = cached_run(tmp_path_factory, M=M)
    out = report(ReportConfig(run=run, n_features=12, progress=False, evidence=EvidenceConfig(n_top=4, max_contexts=8)))
    return out, json.loads((run / "report" / "data.json").read_text())


class Page:
    """A page at 1280×800 that records console errors and uncaught exceptions."""

    def __init__(self, browser):
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))

    def selected(self) -> int:
        return int(self.page.get_attribute("#feature-card", "data-feature"))


@pytest.mark.parametrize("M", [3, MANY])
def test_dashboard_in_chromium(browser, tmp_path_factory, tmp_path, M):
    html, data = _dashboard(tmp_path_factory, M)
    url = html.resolve().as_uri()
    p = Page(browser)
    pg = p.page
    pg.goto(url)
    assert pg.is_visible("#overview") and not pg.is_visible("#features")
    assert pg.locator(".accuracy-chart").count() == 1  # overview drew the accuracy curves
    # the crosscoder panel says how features fire; the evaluation table explains its columns
    assert pg.inner_text(".inference-rule") == "Features fire by: " + data["crosscoder"]["inference_rule"]
    assert pg.get_attribute('th[title^="fraction of variance unexplained"]', "title") is not None

    # the feature list: one row per reported feature
    pg.click("#tab-features")
    rows = pg.locator("#feature-table tbody tr.feature-row")
    assert rows.count() == len(data["features"]) == 12

    # click a feature that has attribution in the selected task: one RelIE and one RelDec bar per checkpoint
    task = pg.eval_on_selector("#filter-task", "s => s.value")
    assert task == data["main_task"] == max(data["tasks"], key=lambda t: sum(
        abs(v) for f in data["features"] for v in f["tasks"].get(t, {}).get("ie", [])))
    target = next(f["id"] for f in data["features"][1:] if task in f["tasks"])
    pg.click(f'#feature-table tr[data-feature="{target}"]')
    assert p.selected() == target
    assert pg.locator("#feature-card .bars.relie .bar-row").count() == M
    assert pg.locator("#feature-card .bars.reldec .bar-row").count() == M
    assert pg.locator("#feature-card svg.trajectory circle").count() == M
    assert pg.locator("#feature-card .lens tr[data-checkpoint]").count() == M
    assert pg.locator("#view-buttons button").count() == M + 1
    assert pg.locator("#feature-card .ctx").count() > 0
    assert pg.evaluate("location.hash") == f"#feature={target}"
    labels = pg.locator("#feature-card .bars.relie .bar-row .lab").all_inner_texts()
    assert labels == [c["label"] for c in data["checkpoints"]]

    # a checkpoint view shows that checkpoint's own top contexts
    last = data["checkpoints"][-1]["revision"]
    pg.click(f'#view-buttons button[data-view="{last}"]')
    n_last = len(next(f for f in data["features"] if f["id"] == target)["evidence"]["top"][last])
    assert pg.locator("#feature-card .ctx").count() == n_last

    # keyboard: j moves to the next row of the list, k back
    order = [int(x) for x in pg.locator("#feature-table tbody tr.feature-row").evaluate_all("rs => rs.map(r => r.dataset.feature)")]
    pg.keyboard.press("j")
    assert p.selected() == order[order.index(target) + 1]
    pg.keyboard.press("k")
    assert p.selected() == target

    # sorting by id (click the header) and filtering by class
    pg.click('#feature-table th[data-key="id"]')
    ids = [int(x) for x in pg.locator("#feature-table tbody tr.feature-row").evaluate_all("rs => rs.map(r => r.dataset.feature)")]
    assert ids == sorted(f["id"] for f in data["features"])
    cls = data["features"][0]["reldec_class"]
    pg.select_option("#filter-class", f"reldec:{cls}")
    assert pg.locator("#feature-table tbody tr.feature-row").count() == sum(f["reldec_class"] == cls for f in data["features"])

    pg.screenshot(path=str(tmp_path / f"dashboard_m{M}.png"))
    assert (tmp_path / f"dashboard_m{M}.png").stat().st_size > 10_000

    # deep link straight to a feature, in a fresh page
    other = data["features"][-1]["id"]
    q = Page(browser)
    q.page.goto(f"{url}#feature={other}")
    assert q.page.is_visible("#features") and q.selected() == other
    assert q.page.locator("#feature-card .bars.reldec .bar-row").count() == M
    # and changing the hash moves the card
    q.page.evaluate(f"location.hash = '#feature={target}'")
    q.page.wait_for_function(f"document.querySelector('#feature-card').dataset.feature === '{target}'")

    assert p.errors == [] and q.errors == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in p.requests + q.requests), "the dashboard must not touch the network"
    p.page.close()
    q.page.close()
