"""Open every built chapter in headless Chromium and check what a reader would see.

For each page: it loads (HTTP 200), shows no traceback or error output, every image has
loaded (naturalWidth > 0), and it has <audio> elements when its chapter plays sound
(the source calls ``Audio(``). A full-page screenshot goes to _build/screenshots/.
Requests to anything but the local server are refused, so the check is offline and
deterministic (CDN scripts such as MathJax simply do not load).
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

PAGE_PROBE = """() => {
  const imgs = [...document.images];
  const outputs = [...document.querySelectorAll('.cell_output, .output')];
  return {
    title: document.title,
    images: imgs.length,
    broken_images: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80)),
    audio: document.querySelectorAll('audio').length,
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


def expects_audio(source: Path) -> bool:
    """A chapter plays sound when one of its code cells calls IPython's Audio."""
    return "Audio(" in source.read_text()


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
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                       else route.abort())
            for stem in ["index", *stems]:
                url = f"{base}/{stem}.html"
                response = page.goto(url, wait_until="load")
                page.wait_for_timeout(300)
                info = page.evaluate(PAGE_PROBE)
                name = Path(stem).name
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                problems = []
                if response is None or response.status != 200:
                    problems.append(f"HTTP {response.status if response else 'no response'}")
                if info["broken_images"]:
                    problems.append(f"images not loaded: {info['broken_images']}")
                if info["error_outputs"] or any(t in info["output_text"] for t in ERROR_TEXT):
                    problems.append("error output or traceback on the page")
                source = root / f"{stem}.md"
                if stem != "index" and expects_audio(source) and info["audio"] == 0:
                    problems.append("the chapter plays sound but the page has no <audio> element")
                info.pop("output_text")
                report[stem] = {**info, "problems": problems}
                status = "ok" if not problems else "FAIL: " + "; ".join(problems)
                print(f"[browser] {stem}: {info['images']} images, {info['audio']} audio -> {status}")
                failures += [f"{stem}: {p}" for p in problems]
            browser.close()
    finally:
        server.shutdown()
    (shots / "report.json").write_text(json.dumps(report, indent=2))
    print(f"[browser] {len(report)} pages checked, {len(failures)} problems; screenshots in {shots}")
    return 1 if failures else 0
