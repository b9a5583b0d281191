"""The browser page (book/08_browser.md) in headless Chromium, offline: its codes are the device's.

For the three demo clips, a WAV given to the file input and a fake microphone
(``--use-fake-device-for-media-stream --use-file-for-fake-audio-capture``), the page's WebAssembly
encoder must produce exactly the Python int8 reference's codes (every level) for the PCM the page
encoded, and its decoded audio must equal ONNX Runtime in Python on those codes within 1e-4 at every
number of codebooks; no console error, no request leaving the machine. Writes the bundle size and the
in-browser encode and decode time per frame to ``_build/web_check.json``.

    python tools/book.py web      # after `python tools/book.py build`
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def _reference():
    from tinycodec.export.int8_quantize import quantize_encoder
    from tinycodec.pretrained import load_pretrained

    return quantize_encoder(load_pretrained("tinycodec"), None, preset="tinycodec")


def result_problems(result: dict, reference, session, what: str) -> list[str]:
    """Differences between one page result and Python (empty: identical codes, audio within tolerance)."""
    pcm = np.asarray(result["pcm"], dtype=np.int16)
    reference.reset()
    want = reference.encode(pcm)
    got = np.asarray(result["codes"], dtype=np.int64)
    problems = []
    if got.shape != want.shape or not np.array_equal(got, want):
        bad = int((got != want).sum()) if got.shape == want.shape else "shape"
        problems.append(f"{what}: codes differ from the int8 reference ({bad} of {want.size})")
        return problems
    for n, decoded in result["decoded"].items():
        levels = (np.arange(got.shape[0]) < int(n)).astype(np.float32)
        (wav,) = session.run(["wav"], {"codes": got[None].astype(np.int64), "levels": levels})
        err = float(np.abs(np.asarray(decoded, dtype=np.float32) - wav.reshape(-1)).max())
        if err > TOLERANCE:
            problems.append(f"{what}: decoded audio at n_q={n} differs from ONNX Runtime by {err:.2e}")
    return problems


def file_url_problems(browser, page_file: Path, external: list[str]) -> list[str]:
    """The page opened as a file (double-clicked) cannot fetch its encoder: it must say how to serve it."""
    from browser_check import offline_route

    page = browser.new_page()
    page.route("**/*", offline_route("file://", external))
    page.goto(page_file.as_uri(), wait_until="load")
    try:
        page.wait_for_function("document.getElementById('tc-status').textContent.includes('http.server')",
                               timeout=30_000)
    except Exception:  # playwright's TimeoutError: report what the reader sees instead
        status = page.evaluate("document.getElementById('tc-status').textContent")
        return [f"opened as a file, the page does not say how to serve it: {status[:120]!r}"]
    finally:
        page.close()
    return []


def check_web_page(html: Path, chromium: str) -> int:
    from browser_check import CHROMIUM_ARGS, _serve, offline_page
    from playwright.sync_api import sync_playwright

    from tinycodec.export.onnx import onnx_session

    page_file = html / "book" / "08_browser.html"
    assets = html / "_static" / "tinycodec_web"
    if not page_file.exists() or not (assets / "decoder.onnx").exists():
        print(f"[web] {page_file} or its assets missing: build the book first", file=sys.stderr)
        return 1
    reference, session = _reference(), onnx_session(assets / "decoder.onnx")
    problems, console, external, report = [], [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        # a WAV for the file input and for the fake microphone: the demo prompt, at 44.1 kHz (resampled by the page)
        from tinycodec.audio import load, save

        wav, _ = load(ROOT / "data" / "demo" / "speech" / "pyannote_sample.wav", 44100)
        clip = Path(tmp) / "reader.wav"
        save(clip, wav[:, 44100 * 8: 44100 * 12], 44100)
        server = _serve(html)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                f"--use-file-for-fake-audio-capture={clip}", "--autoplay-policy=no-user-gesture-required"]

        try:
            with sync_playwright() as pw:
                browser, page = offline_page(pw, chromium, base, external, args)
                page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: console.append(str(e)))
                page.goto(f"{base}/book/08_browser.html", wait_until="load")
                page.wait_for_function("window.tinycodecDemo !== undefined", timeout=30_000)
                page.evaluate("window.tinycodecDemo.ready")  # the first demo clip, run at load
                n_clips = page.evaluate("document.getElementById('tc-clip').options.length")
                runs = [(f"demo clip {i}", f"window.tinycodecDemo.runClip({i})") for i in range(n_clips)]
                for what, call in runs:
                    problems += result_problems(page.evaluate(call), reference, session, what)
                page.set_input_files("#tc-file", str(clip))
                page.wait_for_function("window.tinycodecDemo.results.some(r => r.source.startsWith('file'))",
                                       timeout=60_000)
                file_result = page.evaluate("window.tinycodecDemo.results.find(r => r.source.startsWith('file'))")
                problems += result_problems(file_result, reference, session, "file input")
                mic = page.evaluate("window.tinycodecDemo.record(4)")
                problems += result_problems(mic, reference, session, "fake microphone")
                if max(abs(v) for v in mic["pcm"]) < 100:
                    problems.append("fake microphone: the recording is silent")
                report = {"clips_checked": n_clips + 2,
                          "encode_ms_per_frame": page.evaluate("window.tinycodecDemo.results[0].encode_ms_per_frame"),
                          "decode_ms_per_frame": page.evaluate("window.tinycodecDemo.results[0].decode_ms_per_frame"),
                          "bundle_bytes": {f.name: f.stat().st_size for f in sorted(assets.iterdir())}}
                page.screenshot(path=str(ROOT / "_build" / "screenshots" / "08_browser_run.png"), full_page=True)
                problems += file_url_problems(browser, page_file, external)
                browser.close()
        finally:
            server.shutdown()
    problems += [f"console error: {c[:200]}" for c in console]
    problems += [f"request left the machine: {u}" for u in external]
    report["bundle_total_bytes"] = sum(report.get("bundle_bytes", {}).values())
    report["problems"] = problems
    (ROOT / "_build" / "web_check.json").write_text(json.dumps(report, indent=1) + "\n")
    for p in problems:
        print(f"[web] {p}", file=sys.stderr)
    print(f"[web] {report.get('clips_checked', 0)} runs checked (codes bit-exact, audio within {TOLERANCE:g}); "
          f"encode {report.get('encode_ms_per_frame', float('nan')):.3f} ms/frame; bundle "
          f"{report['bundle_total_bytes'] / 1e6:.1f} MB: {len(problems)} problem(s)")
    return 1 if problems else 0
