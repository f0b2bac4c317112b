"""Layout checks of a dashboard in headless Chromium, and a script that runs them on a finished run.

The checks (also used by tests/report/test_dashboard_browser.py) measure what a reader sees, with
every collapsible section opened:

- ``overflow``: a panel, table box or page wider than the room it has (its content scrolls or is cut
  sideways), named by its panel's title;
- ``overlaps``: two text labels of one chart whose boxes overlap (the boxes of the SVG ``text``
  elements as drawn, rotation included), a label crossed by a curve or a point of the chart, or a
  label drawn outside its chart;
- ``unprintable``: "undefined", "null" or "NaN" in the page's text or tooltips (token texts aside);
- ``overview_screens``: the Overview's height, as first shown, in windows.

By hand, on a finished run (e.g. the demo's; its report is not re-made, re-make it first)::

    python tests/report/check_dashboard.py RUN [--shots DIR]

prints the findings at 1280×800 and 1920×1080 (exit status 1 if any), and with ``--shots`` writes
the documentation's screenshots (docs/img/dashboard-*.png) of that run into DIR.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from crosstime.artifacts import read_report_data

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
VIEWPORTS = ((1280, 800), (1920, 1080))
UNPRINTABLE = r"\b(undefined|null|NaN)\b"

# Every panel (or scroll box) whose content is wider than itself, and the page itself when wider than the window.
OVERFLOW_JS = """() => {
  const out = [];
  const name = e => { const p = e.closest('.panel, .task-panel, details.section'); const h = p && p.querySelector('h2, summary');
                      return (h ? h.textContent.trim().slice(0, 60) : e.id || e.className) + ' [' + e.className + ']'; };
  document.querySelectorAll('.panel, .hscroll, .scroll, .task-panel, .page, main, body, #list-wrap, #card-pane').forEach(e => {
    if (e.offsetParent === null && e.tagName !== 'BODY') return;
    if (e.scrollWidth > e.clientWidth + 1) out.push(name(e) + ': ' + e.scrollWidth + ' > ' + e.clientWidth + ' px');
  });
  if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('page: ' + document.documentElement.scrollWidth + ' px wide');
  return out;
}"""

# Labels of a chart that overlap each other, are crossed by its curves or points, or stick out of it.
OVERLAP_JS = """() => {
  const SHRINK_X = 0.5, SHRINK_Y = 2;  // a text's box holds its line height: neighbours a line apart only touch
  function quad(t) {
    const b = t.getBBox(), m = t.getScreenCTM();
    if (!b.width || !m) return null;
    const pts = [[b.x + SHRINK_X, b.y + SHRINK_Y], [b.x + b.width - SHRINK_X, b.y + SHRINK_Y],
                 [b.x + b.width - SHRINK_X, b.y + b.height - SHRINK_Y], [b.x + SHRINK_X, b.y + b.height - SHRINK_Y]];
    return pts.map(([x, y]) => [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]);
  }
  function axes(q) { return q.map((p, i) => { const n = q[(i + 1) % q.length]; return [p[1] - n[1], n[0] - p[0]]; }); }
  function separated(a, b) {
    return axes(a).concat(axes(b)).some(([ax, ay]) => {
      const pa = a.map(p => p[0] * ax + p[1] * ay), pb = b.map(p => p[0] * ax + p[1] * ay);
      return Math.max(...pa) <= Math.min(...pb) || Math.max(...pb) <= Math.min(...pa);
    });
  }
  const inside = (q, p) => !separated(q, [p, [p[0] + 0.01, p[1]], [p[0], p[1] + 0.01]]);
  const out = [];
  const said = t => Array.from(t.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent).join('');  // its title aside
  document.querySelectorAll('svg').forEach(svg => {
    if (!svg.getClientRects().length) return;
    const chart = (svg.getAttribute('class') || 'svg').split(' ')[0] + ' ' + (svg.closest('[data-checkpoint], .panel, .task-panel')?.querySelector('h2, figcaption')?.textContent || '').slice(0, 40);
    const texts = Array.from(svg.querySelectorAll('text')).map(t => [t, quad(t)]).filter(x => x[1]);
    const box = svg.getBoundingClientRect();
    texts.forEach(([t, q]) => {
      if (q.some(([x, y]) => x < box.left - 1 || x > box.right + 1 || y < box.top - 1 || y > box.bottom + 1))
        out.push(chart + ': "' + said(t) + '" sticks out of the chart');
    });
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++)
      if (!separated(texts[i][1], texts[j][1])) out.push(chart + ': "' + said(texts[i][0]) + '" overlaps "' + said(texts[j][0]) + '"');
    const marks = [];  // points of the curves, in screen pixels, a segment's points 2 px apart
    svg.querySelectorAll('polyline').forEach(pl => {
      const m = pl.getScreenCTM(), p = pl.points;
      for (let k = 0; k + 1 < p.numberOfItems; k++) {
        const a = p.getItem(k), b = p.getItem(k + 1), n = Math.max(1, Math.ceil(Math.hypot(b.x - a.x, b.y - a.y) / 2));
        for (let s = 0; s <= n; s++) { const x = a.x + (b.x - a.x) * s / n, y = a.y + (b.y - a.y) * s / n; marks.push([m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]); }
      }
    });
    svg.querySelectorAll('circle').forEach(c => { const r = c.getBoundingClientRect(); marks.push([r.left + r.width / 2, r.top + r.height / 2]); });
    texts.forEach(([t, q]) => { if (marks.some(p => inside(q, p))) out.push(chart + ': a curve crosses "' + said(t) + '"'); });
  });
  return out;
}"""

# What the page prints and says on hover, token texts aside (they are the vocabulary's words).
TEXT_JS = """() => {
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('.toks, .lens code, script').forEach(e => e.remove());
  const titles = Array.from(clone.querySelectorAll('[title]')).map(e => e.getAttribute('title'));
  const svgText = Array.from(clone.querySelectorAll('svg text, svg title')).map(e => e.textContent);
  return [document.body.innerText].concat(titles, svgText, Array.from(clone.querySelectorAll('option')).map(o => o.textContent)).join('\\n');
}"""


@dataclass
class Findings:
    """What the checks found at one window size."""

    size: str
    overflow: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    unprintable: list[str] = field(default_factory=list)
    overview_screens: float = 0.0
    errors: list[str] = field(default_factory=list)

    def bad(self) -> bool:
        return bool(self.overflow or self.overlaps or self.unprintable or self.errors)


def open_page(browser, html: Path, width: int, height: int):
    """The dashboard at ``html`` in a fresh page of that size; its console errors collected in ``page.errors``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.errors = []
    page.on("console", lambda m: page.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
    page.goto(html.resolve().as_uri())
    return page


def open_all(page) -> None:
    """Every collapsible part of the page opened (sections, tasks, settings), as a reader who reads everything."""
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")


def unprintable(text: str) -> list[str]:
    """Each "undefined" / "null" / "NaN" in ``text``, with the words around it."""
    return [text[max(0, m.start() - 40): m.end() + 20].replace("\n", " ") for m in re.finditer(UNPRINTABLE, text)]


def features_to_visit(data: dict, n: int = 4) -> list[int]:
    """Feature ids whose cards are checked: the first listed, and every one with something unusual
    (a disputed RelDec class, no attribution), at most ``n``."""
    feats = data["features"]
    picks = [feats[0]["id"]] if feats else []
    picks += [f["id"] for f in feats if f.get("reldec_disputed")][:1]
    picks += [f["id"] for f in feats if not f.get("tasks")][:1]
    picks += [f["id"] for f in feats[1:]]
    return list(dict.fromkeys(picks))[:n]


def check(browser, html: Path, data: dict, width: int, height: int) -> Findings:
    """The checks of the module docstring on the dashboard ``html`` (whose data is ``data``) at one size."""
    found = Findings(f"{width}x{height}")
    page = open_page(browser, html, width, height)
    page.click("#tab-overview")
    found.overview_screens = round(page.evaluate("document.getElementById('overview').scrollHeight") / height, 1)
    open_all(page)
    found.overflow += page.evaluate(OVERFLOW_JS)
    found.overlaps += page.evaluate(OVERLAP_JS)
    found.unprintable += unprintable(page.evaluate(TEXT_JS))
    page.click("#tab-features")
    for fid in features_to_visit(data):
        page.click(f'#feature-table tr[data-feature="{fid}"]')
        open_all(page)
        found.overflow += [f"feature {fid}: {x}" for x in page.evaluate(OVERFLOW_JS)]
        found.overlaps += [f"feature {fid}: {x}" for x in page.evaluate(OVERLAP_JS)]
        found.unprintable += [f"feature {fid}: {x}" for x in unprintable(page.evaluate(TEXT_JS))]
    found.overflow, found.overlaps, found.unprintable = (list(dict.fromkeys(x)) for x in
                                                         (found.overflow, found.overlaps, found.unprintable))
    found.errors = page.errors
    page.close()
    return found


def screenshots(browser, html: Path, folder: Path, width: int, height: int) -> list[Path]:
    """The documentation's screenshots at one size: the Overview as it opens, its crosscoder section and
    its first task opened, the feature list with a card, and the card's logit lens."""
    folder.mkdir(parents=True, exist_ok=True)
    size = f"{width}x{height}"
    page = open_page(browser, html, width, height)
    shots = [folder / f"dashboard-overview-{size}.png"]
    page.screenshot(path=str(shots[-1]))
    for name, selector in (("crosscoder", 'details.section[data-section="crosscoder"]'),
                           ("tasks", 'details.section[data-section="tasks"]')):
        page.evaluate(f"""() => {{ const d = document.querySelector('{selector}'); d.open = true;
            const task = d.querySelector('details.task-panel'); if (task) task.open = true;
            document.getElementById('overview').scrollTop = d.offsetTop - 50; }}""")
        shots.append(folder / f"dashboard-{name}-{size}.png")
        page.screenshot(path=str(shots[-1]))
    page.click("#tab-features")
    shots.append(folder / f"dashboard-features-{size}.png")
    page.screenshot(path=str(shots[-1]))
    page.evaluate("document.querySelector('#card-pane').scrollTop = document.querySelector('#card-pane').scrollHeight")
    shots.append(folder / f"dashboard-feature-lens-{size}.png")
    page.screenshot(path=str(shots[-1]))
    page.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check RUN/report/index.html in headless Chromium at 1280×800 and "
                                                 "1920×1080: overflowing panels, overlapping labels, 'undefined'.")
    parser.add_argument("run", type=Path, help="a run whose report was made (RUN/report/index.html)")
    parser.add_argument("--shots", type=Path, help="write the documentation's screenshots of it into this folder")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright  # lazy: a dev extra


    html = args.run / "report" / "index.html"
    data = read_report_data(args.run / "report").model_dump(mode="json")
    bad = False
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        for width, height in VIEWPORTS:
            found = check(browser, html, data, width, height)
            bad |= found.bad()
            print(f"{found.size}: Overview {found.overview_screens} screens as opened; {len(found.overflow)} overflowing, "
                  f"{len(found.overlaps)} overlapping labels, {len(found.unprintable)} undefined/null/NaN, "
                  f"{len(found.errors)} console errors")
            for kind in ("overflow", "overlaps", "unprintable", "errors"):
                for line in getattr(found, kind):
                    print(f"  {kind}: {line}")
            if args.shots:
                print("  screenshots:", ", ".join(str(s) for s in screenshots(browser, html, args.shots, width, height)))
        browser.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
