"""Open every built page in headless Chromium and check what a reader would see, offline.

For each page: it loads (HTTP 200), shows no traceback or error output, every image has
loaded (naturalWidth > 0), it has <audio> elements when its chapter plays sound, and
- every formula is typeset: MathJax (served from the build) has run and no raw TeX such as
  ``\\(\\log_2 K\\)`` is left in the text;
- no request left the machine: anything but the local server is refused *and* reported, so a
  CDN script, font or widget manager fails the check instead of silently not loading;
- every <audio> element carries the level its samples had before the player normalized them
  (``tinycodec.audio.excerpt.player``), at or above the book's loudness floor;
- nothing runs off the right edge: the page does not scroll sideways, and no table, code block,
  output or image is wider than the text column unless it sits in a box that scrolls.
A full-page screenshot goes to _build/screenshots/ (read them: a check cannot judge a figure).
"""

from __future__ import annotations

import functools
import http.server
import json
import sys
import threading
from pathlib import Path

ERROR_TEXT = ("Traceback (most recent call last)", "Error in callback", "PapermillExecutionError")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# resolves once MathJax (2 or 3) has typeset the page, or at once when the page has no MathJax
MATHJAX_DONE = """() => new Promise(resolve => {
  const deadline = Date.now() + 15000;
  const poll = () => {
    const mj = window.MathJax;
    if (mj && mj.Hub && mj.Hub.Queue) { mj.Hub.Queue(() => resolve('mathjax2')); return; }
    if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(() => resolve('mathjax3')); return; }
    const wanted = [...document.scripts].some(s => /mathjax/i.test(s.src));
    if (!wanted) { resolve('none'); return; }
    if (Date.now() > deadline) { resolve('timeout'); return; }
    setTimeout(poll, 100);
  };
  poll();
})"""

PAGE_PROBE = """() => {
  const imgs = [...document.images];
  const outputs = [...document.querySelectorAll('.cell_output, .output')];
  const article = document.querySelector('article') || document.body;
  // raw TeX: text outside code, scripts and typeset formulas that still holds TeX delimiters
  const skip = 'pre, code, script, style, textarea, .highlight, .MathJax_CHTML, .MathJax_Preview, mjx-container';
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const rawTex = [];
  const texPattern = /\\\\\\(|\\\\\\)|\\\\\\[|\\\\\\]|\\$\\$|\\\\(frac|log|text|cdot|sum|mathbb|lVert|qquad)\\b/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip) || !el.getClientRects().length) continue;
    if (texPattern.test(n.textContent)) rawTex.push(n.textContent.trim().slice(0, 60));
  }
  // TeX that MathJax typeset but could not interpret (e.g. an escaped underscore inside text mode) shows its backslash
  for (const m of document.querySelectorAll('.MathJax_CHTML, mjx-container')) {
    if (m.textContent.includes('\\\\')) rawTex.push('typeset: ' + m.textContent.trim().slice(0, 50));
  }
  const maths = [...document.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('.MathJax_CHTML, mjx-container, .MathJax, .MathJax_Display'));
  // clipping: wider than the text column without a scrolling box around it
  const col = article.getBoundingClientRect();
  const scrolls = el => {
    for (let a = el; a && a !== article; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === 'auto' || ox === 'scroll') && a.getBoundingClientRect().right <= col.right + 2) return true;
    }
    return false;
  };
  const clipped = [...article.querySelectorAll('table, pre, img, .cell_output > div')]
    .filter(el => el.getBoundingClientRect().right > col.right + 2 && !scrolls(el))
    .map(el => el.tagName.toLowerCase() + '.' + (el.className || '').toString().split(' ')[0]);
  const audio = [...document.querySelectorAll('audio')].map(a => ({
    rms: a.dataset.tinycodecRmsDbfs === undefined ? null : parseFloat(a.dataset.tinycodecRmsDbfs),
    active: a.dataset.tinycodecActiveFraction === undefined ? null : parseFloat(a.dataset.tinycodecActiveFraction),
  }));
  return {
    title: document.title,
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80)),
    audio: audio.length,
    audio_levels: audio,
    formulas: maths.length,
    untypeset: untypeset.map(m => m.textContent.trim().slice(0, 60)),
    raw_tex: rawTex.slice(0, 5),
    page_scrolls_sideways: document.documentElement.scrollWidth > window.innerWidth + 2,
    clipped: clipped.slice(0, 5),
    error_outputs: document.querySelectorAll('.output.error, .output.traceback, .cell_output .traceback').length,
    output_text: outputs.map(o => o.innerText).join('\\n'),
  };
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would drown the report
        pass


def _serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def offline_route(base: str, external: list[str]):
    """A Playwright route handler: requests to the book's server (and data:/blob: URLs) pass; any
    other is refused and its URL appended to ``external``, so a page that needs the network fails."""

    def route(r) -> None:
        url = r.request.url
        if url.startswith((base, "data:", "blob:")):
            r.continue_()
        else:
            external.append(url[:100])
            r.abort()

    return route


def offline_page(pw, chromium: str, base: str, external: list[str], args: list[str] = CHROMIUM_ARGS):
    """Chromium and one 1280 x 900 page whose every request goes through :func:`offline_route`.

    Returns:
        (browser, page): close the browser when done.
    """
    browser = pw.chromium.launch(executable_path=chromium, args=args)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.route("**/*", offline_route(base, external))
    return browser, page


def expects_audio(source: Path) -> bool:
    """A chapter plays sound when one of its code cells makes a player."""
    text = source.read_text() if source.exists() else ""
    return "player(" in text or "Audio(" in text


def page_problems(info: dict, mathjax: str, external: list[str], wants_audio: bool) -> list[str]:
    """What is wrong with one page, from the probe's findings (empty: the page is fine)."""
    from tinycodec.audio.excerpt import AUDIBLE_RMS_DBFS, MIN_ACTIVE_FRACTION

    problems = []
    if info["broken_images"]:
        problems.append(f"images not loaded: {info['broken_images']}")
    if info["error_outputs"] or any(t in info.get("output_text", "") for t in ERROR_TEXT):
        problems.append("error output or traceback on the page")
    if wants_audio and info["audio"] == 0:
        problems.append("the chapter plays sound but the page has no <audio> element")
    if info["formulas"] and mathjax not in ("mathjax2", "mathjax3"):
        problems.append(f"{info['formulas']} formulas but MathJax did not run ({mathjax})")
    if info["untypeset"]:
        problems.append(f"{len(info['untypeset'])} formulas left untypeset, e.g. {info['untypeset'][0]!r}")
    if info["raw_tex"]:
        problems.append(f"raw TeX in the text, e.g. {info['raw_tex'][0]!r}")
    if external:
        problems.append(f"{len(external)} requests would leave the machine, e.g. {external[0]}")
    for i, level in enumerate(info["audio_levels"], 1):
        if level["rms"] is None or level["active"] is None:
            problems.append(f"player {i}: no recorded level (make it with tinycodec.audio.excerpt.player)")
        elif level["rms"] < AUDIBLE_RMS_DBFS or level["active"] < MIN_ACTIVE_FRACTION:
            problems.append(f"player {i}: too quiet ({level['rms']:.1f} dBFS, {level['active']:.0%} active)")
    if info["page_scrolls_sideways"]:
        problems.append("the page scrolls sideways (something is wider than the window)")
    if info["clipped"]:
        problems.append(f"content runs off the text column: {info['clipped']}")
    return problems


def _probe(page) -> tuple[str, dict]:
    """MathJax's state and the page probe; retried when the page navigates (index.html redirects)."""
    for attempt in range(3):
        try:
            page.wait_for_load_state("load")
            mathjax = page.evaluate(MATHJAX_DONE)
            page.wait_for_timeout(300)
            return mathjax, page.evaluate(PAGE_PROBE)
        except Exception as exc:  # "Execution context was destroyed": a redirect is under way
            if "context was destroyed" not in str(exc) or attempt == 2:
                raise
            page.wait_for_timeout(500)
    raise AssertionError("unreachable")


def check_site(html: Path, shots: Path, stems: list[str], chromium: str) -> int:
    from playwright.sync_api import sync_playwright

    if not (html / "index.html").exists():
        print(f"[browser] {html / 'index.html'} missing: build the book first", file=sys.stderr)
        return 1
    if not Path(chromium).exists():
        print(f"[browser] Chromium not found at {chromium}: apt-get install -y chromium", file=sys.stderr)
        return 1
    shots.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[1]
    server = _serve(html)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    failures, report = [], {}
    external: list[str] = []

    try:
        with sync_playwright() as pw:
            browser, page = offline_page(pw, chromium, base, external)
            console: list[str] = []  # a page's console errors and uncaught exceptions
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(str(e)))
            for stem in ["index", *stems]:
                external.clear()
                console.clear()
                url = f"{base}/{stem}.html"
                response = page.goto(url, wait_until="load")
                mathjax, info = _probe(page)
                name = Path(stem).name
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                problems = []
                if response is None or response.status != 200:
                    problems.append(f"HTTP {response.status if response else 'no response'}")
                source = root / f"{stem}.md"
                problems += page_problems(info, mathjax, list(external), stem != "index" and expects_audio(source))
                problems += [f"console error: {c[:160]}" for c in console]
                info.pop("output_text")
                report[stem] = {**info, "mathjax": mathjax, "external_requests": list(external),
                                "problems": problems}
                status = "ok" if not problems else "FAIL: " + "; ".join(problems)
                print(f"[browser] {stem}: {info['images']} images, {info['audio']} audio, "
                      f"{info['formulas']} formulas ({mathjax}) -> {status}")
                failures += [f"{stem}: {p}" for p in problems]
            browser.close()
    finally:
        server.shutdown()
    (shots / "report.json").write_text(json.dumps(report, indent=2))
    print(f"[browser] {len(report)} pages checked, {len(failures)} problems; screenshots in {shots}")
    return 1 if failures else 0
