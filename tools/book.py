"""Execute, check, build and browse the book: the steps behind `nox -s book|notebooks|tests`.

    python tools/book.py data                 # fetch the demo corpus (idempotent)
    python tools/book.py execute [--fast]     # papermill every chapter -> _build/executed/book/
    python tools/book.py audio                # every player in them clears the loudness floor
    python tools/book.py nbval                # re-run them; `# NBVAL_CHECK_OUTPUT` cells must match
    python tools/book.py static               # MathJax (Debian's libjs-mathjax) + CSS -> _build/_static
    python tools/book.py build                # Jupyter Book from the executed notebooks -> _build/html
    python tools/book.py browser              # headless Chromium opens every page -> _build/screenshots
    python tools/book.py wording              # no project-internal wording in the built HTML, README, cards, CLI help
    python tools/book.py web                  # the browser page in headless Chromium: codes and audio vs Python

Each chapter is executed once: `execute` skips a chapter whose source, parameters and package
code are unchanged since its last run, and `build` renders the executed notebooks with
execution turned off.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_notebooks import ROOT, toc_chapters, toc_pages  # noqa: E402

BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
SITE = BUILD / "site"
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"
DEMO = ROOT / "data" / "demo"
STATIC = "_build/_static"  # html_static_path in _config.yml, relative to the book's source folder
# MathJax 2.7 from Debian (`apt-get install libjs-mathjax`, listed in .ci/apt-packages.txt);
# MATHJAX_DIR may point at another copy of the same layout
MATHJAX_DIR = Path(os.environ.get("MATHJAX_DIR", "/usr/share/javascript/mathjax"))
# the parts of it that TeX input + CommonHTML output load (about 1.5 MB of 41 MB)
MATHJAX_PARTS = ["MathJax.js", "config/TeX-AMS_CHTML.js", "extensions", "jax/input/TeX", "jax/element",
                 "jax/output/CommonHTML", "fonts/HTML-CSS/TeX/woff", "localization/en"]
# wide tables and long lines scroll inside their box instead of running off the page
BOOK_CSS = """\
div.cell_output table, article table { display: block; max-width: 100%; overflow-x: auto; }
div.cell_output table { font-size: 0.78em; }
div.cell_output table td, div.cell_output table th { padding: 0.2em 0.45em; white-space: nowrap; }
div.cell_output pre, div.cell_input pre, article pre { overflow-x: auto; max-width: 100%; }
div.cell_output img { max-width: 100%; height: auto; }
div.cell_output .output.text_html { overflow-x: auto; }
mjx-container, .MathJax_CHTML { max-width: 100%; overflow-x: auto; overflow-y: hidden; }
"""


def cmd_data(args) -> int:
    """The book's default data: the demo corpus, fetched through the package index only."""
    return subprocess.call([sys.executable, "-m", "tinycodec", "data", "fetch", "demo", "--to", str(DEMO)])


def _code_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "tinycodec").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def cmd_execute(args) -> int:
    import nbformat
    import papermill

    params = {"FAST": not args.full}
    code_hash = _code_hash()
    (EXECUTED / "book").mkdir(parents=True, exist_ok=True)
    # chapters read ../data/demo, ../benchmarks/*.json ... relative to book/: mirror the repository's
    # other folders beside the executed notebooks, so papermill and nbval see the same paths
    for folder in ("data", "benchmarks", "firmware", "examples"):
        link = EXECUTED / folder
        if (ROOT / folder).is_dir() and not link.exists():
            link.symlink_to(ROOT / folder, target_is_directory=True)
    failed, timings = [], {}
    for stem in args.chapters or toc_chapters():
        src, out = ROOT / f"{stem}.ipynb", EXECUTED / f"{stem}.ipynb"
        key = hashlib.sha256(src.read_bytes() + json.dumps(params).encode() + code_hash.encode()).hexdigest()
        if out.exists() and nbformat.read(out, as_version=4).metadata.get("tinycodec_key") == key:
            print(f"[execute] {stem}: unchanged, reusing {out.relative_to(ROOT)}")
            continue
        print(f"[execute] {stem} {params} ...", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(src), str(out), parameters=params, cwd=str(ROOT / "book"),
                kernel_name="python3", progress_bar=False,
                execution_timeout=900,  # a cell stuck (e.g. on widget comms) fails instead of hanging CI
            )
        except Exception as exc:  # keep going: report every failing chapter, keep its notebook
            failed.append(stem)
            print(f"[execute] FAILED {stem}: {str(exc).strip()[-2000:]}", file=sys.stderr)
            continue
        timings[stem] = round(time.perf_counter() - start, 1)
        nb = nbformat.read(out, as_version=4)
        nb.metadata["tinycodec_key"] = key
        nbformat.write(nb, out)
        print(f"[execute] {stem}: {timings[stem]} s")
    timings_file = EXECUTED / "timings.json"  # seconds per chapter, kept for reused chapters
    previous = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    timings_file.write_text(json.dumps({**previous, **timings}, indent=2))
    if failed:
        print(f"[execute] failed chapters (executed notebooks kept in {EXECUTED}): {failed}", file=sys.stderr)
    quiet = _check_audio([s for s in (args.chapters or toc_chapters()) if s not in failed])
    return 1 if failed or quiet else 0


_AUDIO_TAG = re.compile(r"<audio\b[^>]*>(.*?)</audio>", re.S | re.I)
_ATTR = re.compile(r'data-tinycodec-([a-z-]+)="([^"]*)"')
_WAV = re.compile(r"data:audio/wav;base64,([A-Za-z0-9+/=\s]+)")


def audio_problems(nb) -> list[str]:
    """Players in an executed notebook that are silent or whose level before normalization is unknown.

    Every `<audio>` element must come from `tinycodec.audio.excerpt.player`, which records the clip's
    level before IPython normalizes it (`data-tinycodec-rms-dbfs`, `-active-fraction`); both must
    clear the floor in `tinycodec.audio.excerpt`, and the embedded WAV must hold non-zero samples.
    """
    from tinycodec.audio.excerpt import AUDIBLE_RMS_DBFS, MIN_ACTIVE_FRACTION

    problems, n = [], 0
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(k.startswith("audio/") for k in data):
                problems.append(f"cell {i}: a raw audio output (use tinycodec.audio.excerpt.player)")
            html = data.get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            for match in _AUDIO_TAG.finditer(html):
                n += 1
                where = f"cell {i}, player {n}"
                attrs = dict(_ATTR.findall(match.group(0)))
                if "rms-dbfs" not in attrs or "active-fraction" not in attrs:
                    problems.append(f"{where}: level before normalization unknown (use tinycodec.audio.excerpt.player)")
                    continue
                rms, active = float(attrs["rms-dbfs"]), float(attrs["active-fraction"])
                if rms < AUDIBLE_RMS_DBFS or active < MIN_ACTIVE_FRACTION:
                    problems.append(f"{where}: too quiet to hear: {rms:.1f} dBFS RMS (floor {AUDIBLE_RMS_DBFS:g}), "
                                    f"{active:.0%} active frames (floor {MIN_ACTIVE_FRACTION:.0%})")
                wav = _WAV.search(match.group(0))
                if wav is None:
                    problems.append(f"{where}: no embedded WAV")
                    continue
                with wave.open(io.BytesIO(base64.b64decode("".join(wav.group(1).split())))) as w:
                    frames = w.readframes(w.getnframes())
                if not frames.strip(b"\x00"):
                    problems.append(f"{where}: the embedded WAV is empty or all zeros")
    return problems


def _check_audio(stems: list[str]) -> int:
    import nbformat

    failures = 0
    for stem in stems:
        path = EXECUTED / f"{stem}.ipynb"
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        problems = audio_problems(nb)
        players = sum(len(_AUDIO_TAG.findall("".join(o.get("data", {}).get("text/html", "")))) for c in nb.cells
                      for o in c.get("outputs", []))
        status = "ok" if not problems else f"{len(problems)} problems"
        print(f"[audio] {stem}: {players} players -> {status}")
        for p in problems:
            print(f"[audio] {stem}: {p}", file=sys.stderr)
        failures += len(problems)
    return failures


def cmd_audio(args) -> int:
    return 1 if _check_audio(args.chapters or toc_chapters()) else 0


def cmd_nbval(args) -> int:
    notebooks = [str(EXECUTED / f"{stem}.ipynb") for stem in toc_chapters()]
    missing = [n for n in notebooks if not Path(n).exists()]
    if missing:
        print(f"[nbval] run `python tools/book.py execute` first; missing {missing}", file=sys.stderr)
        return 1
    return subprocess.call([
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
        "--nbval-current-env", "--nbval-sanitize-with", str(Path(__file__).with_name("nbval_sanitize.cfg")),
        "-o", "addopts=", "--rootdir", str(EXECUTED), *notebooks,
    ])


def write_static(source_dir: Path) -> int:
    """MathJax and the book's CSS into ``source_dir/_build/_static``, served by the built book."""
    static = source_dir / STATIC
    static.mkdir(parents=True, exist_ok=True)
    (static / "tinycodec.css").write_text(BOOK_CSS)
    if not (MATHJAX_DIR / "MathJax.js").exists():
        print(f"[static] MathJax not found in {MATHJAX_DIR}: apt-get install -y libjs-mathjax "
              "(or set MATHJAX_DIR); formulas will show as raw TeX and the browser check will fail",
              file=sys.stderr)
        return 1
    target = static / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    for part in MATHJAX_PARTS:
        src = MATHJAX_DIR / part
        if src.is_dir():
            shutil.copytree(src, target / part, symlinks=False)
        elif src.exists():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target / part)
    return 0


def cmd_static(args) -> int:
    return write_static(ROOT)


def cmd_build(args) -> int:
    import yaml

    if SITE.exists():
        shutil.rmtree(SITE)
    (SITE / "book").mkdir(parents=True)
    for stem in toc_chapters():
        executed = EXECUTED / f"{stem}.ipynb"
        if not executed.exists():
            print(f"[build] {stem} has not been executed: run `python tools/book.py execute`", file=sys.stderr)
            return 1
        shutil.copy(executed, SITE / f"{stem}.ipynb")
    for asset in (ROOT / "book").iterdir():  # figures and other static files the chapters reference
        if asset.is_file() and asset.suffix not in {".md", ".ipynb"}:
            shutil.copy(asset, SITE / "book" / asset.name)
    for page in toc_pages():  # plain Markdown pages (no notebook), e.g. the bibliography
        if page not in toc_chapters():
            shutil.copy(ROOT / f"{page}.md", SITE / f"{page}.md")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["exclude_patterns"] = ["_build", "**.ipynb_checkpoints", "tinycodec"]
    config["sphinx"]["local_extensions"] = {"sphinx_tidy": str(ROOT / "tools")}  # from the staged site
    (SITE / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "_toc.yml", SITE / "_toc.yml")
    for name in config.get("bibtex_bibfiles", []):
        shutil.copy(ROOT / name, SITE / name)
    # chapters show the package's own code with `literalinclude` of /tinycodec/...: a path from
    # the book's source folder, which is the repository root in a plain build
    (SITE / "tinycodec").symlink_to(ROOT / "tinycodec", target_is_directory=True)
    write_static(SITE)  # without MathJax the book still builds; the browser check then fails
    import web_demo  # the browser page's encoder (WebAssembly), decoder (ONNX) and onnxruntime-web

    try:
        web_demo.build(SITE / STATIC / "tinycodec_web")
    except RuntimeError as exc:
        print(f"[build] the browser page's assets: {exc}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    rc = subprocess.call([
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(SITE), "--path-output", str(ROOT),
        "-W", "-n", "--keep-going",
    ])
    print(f"[build] jupyter-book finished in {time.perf_counter() - start:.1f} s, rc={rc}: {HTML / 'index.html'}")
    return rc


# Wording that tells how the project was built rather than what it is: a reader never sees it.
INTERNAL_PHRASES = (
    "our machines", "our build machines", "no dataset host is reachable", "servers our machines cannot reach",
    "the design notes these presets come from", "within the 20 % we allow", "check_seed_claims",
    "an earlier version of this chapter", "timeout -s term", "the project set itself", "the target of this project",
    "our target for", "checkpoints/reference_", "/work/main", "seed documents", "the issue asks",
    "(issue ", "3-hour session",
)


def internal_wording(text: str, where: str) -> list[str]:
    """One line per project-internal phrase in ``text`` (case-insensitive), with some context."""
    low, found = text.lower(), []
    for phrase in INTERNAL_PHRASES:
        for m in re.finditer(re.escape(phrase), low):
            context = " ".join(text[max(0, m.start() - 40): m.end() + 40].split())
            found.append(f"{where}: {phrase!r} in \"...{context}...\"")
    return found


def visible_text(html: str) -> str:
    """The text a reader sees on a page: tags, scripts and styles removed, entities decoded."""
    import html as html_lib

    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    return html_lib.unescape(re.sub(r"(?s)<[^>]+>", " ", html))


def cli_help_text() -> str:
    """The ``--help`` of ``tinycodec`` and of every command and sub-command, as one text."""
    import argparse as ap

    from tinycodec.cli import build_parser

    texts, todo = [], [build_parser()]
    while todo:
        parser = todo.pop()
        texts.append(parser.format_help())
        for action in parser._actions:  # argparse keeps sub-commands only here
            if isinstance(action, ap._SubParsersAction):
                todo += list(action.choices.values())
    return "\n".join(texts)


def cmd_wording(args) -> int:
    """Fail on project-internal wording in the built book, the README, the model cards and the CLI help."""
    problems = []
    pages = sorted(HTML.rglob("*.html")) if HTML.exists() else []
    if not pages:
        print(f"[wording] no built book in {HTML}: run `python tools/book.py build` first", file=sys.stderr)
        return 1
    for page in pages:
        if "_static" in page.parts or page.name in ("genindex.html", "search.html"):
            continue
        problems += internal_wording(visible_text(page.read_text(errors="replace")), str(page.relative_to(HTML)))
    for doc in [ROOT / "README.md", *sorted((ROOT / "tinycodec" / "pretrained").glob("*.md"))]:
        problems += internal_wording(doc.read_text(), str(doc.relative_to(ROOT)))
    problems += internal_wording(cli_help_text(), "tinycodec --help (every command)")
    for line in problems:
        print(f"[wording] {line}", file=sys.stderr)
    print(f"[wording] {len(pages)} pages, README, cards and CLI help: {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_browser(args) -> int:
    from browser_check import check_site

    return check_site(HTML, SHOTS, toc_pages(), chromium=args.chromium)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("data").set_defaults(func=cmd_data)
    p = sub.add_parser("execute")
    p.add_argument("--fast", action="store_true", help="FAST=True (the default; what CI runs)")
    p.add_argument("--full", action="store_true", help="FAST=False: each chapter's full parameters")
    p.add_argument("chapters", nargs="*", help="chapter stems, e.g. book/00_introduction")
    p.set_defaults(func=cmd_execute)
    p = sub.add_parser("audio")
    p.add_argument("chapters", nargs="*", help="chapter stems (default: every chapter)")
    p.set_defaults(func=cmd_audio)
    sub.add_parser("nbval").set_defaults(func=cmd_nbval)
    sub.add_parser("static").set_defaults(func=cmd_static)
    sub.add_parser("build").set_defaults(func=cmd_build)
    sub.add_parser("wording").set_defaults(func=cmd_wording)
    p = sub.add_parser("web")
    p.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    p.set_defaults(func=lambda a: __import__("web_check").check_web_page(HTML, a.chromium))
    p = sub.add_parser("browser")
    p.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    p.set_defaults(func=cmd_browser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
