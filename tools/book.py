"""Execute, check, build and browse the book: the steps behind `nox -s book|notebooks|tests`.

    python tools/book.py data                 # fetch the demo corpus (idempotent)
    python tools/book.py execute [--fast]     # papermill every chapter -> _build/executed/book/
    python tools/book.py nbval                # re-run them; `# NBVAL_CHECK_OUTPUT` cells must match
    python tools/book.py build                # Jupyter Book from the executed notebooks -> _build/html
    python tools/book.py browser              # headless Chromium opens every page -> _build/screenshots

Each chapter is executed once: `execute` skips a chapter whose source, parameters and package
code are unchanged since its last run, and `build` renders the executed notebooks with
execution turned off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_notebooks import ROOT, toc_chapters  # noqa: E402

BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
SITE = BUILD / "site"
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"
DEMO = ROOT / "data" / "demo"


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
    (EXECUTED / "timings.json").write_text(json.dumps(timings, indent=2))
    if failed:
        print(f"[execute] failed chapters (executed notebooks kept in {EXECUTED}): {failed}", file=sys.stderr)
    return 1 if failed else 0


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
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["exclude_patterns"] = ["_build", "**.ipynb_checkpoints"]
    (SITE / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "_toc.yml", SITE / "_toc.yml")
    start = time.perf_counter()
    rc = subprocess.call([
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(SITE), "--path-output", str(ROOT),
        "-W", "-n", "--keep-going",
    ])
    print(f"[build] jupyter-book finished in {time.perf_counter() - start:.1f} s, rc={rc}: {HTML / 'index.html'}")
    return rc


def cmd_browser(args) -> int:
    from browser_check import check_site

    return check_site(HTML, SHOTS, toc_chapters(), chromium=args.chromium)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("data").set_defaults(func=cmd_data)
    p = sub.add_parser("execute")
    p.add_argument("--fast", action="store_true", help="FAST=True (the default; what CI runs)")
    p.add_argument("--full", action="store_true", help="FAST=False: each chapter's full parameters")
    p.add_argument("chapters", nargs="*", help="chapter stems, e.g. book/00_introduction")
    p.set_defaults(func=cmd_execute)
    sub.add_parser("nbval").set_defaults(func=cmd_nbval)
    sub.add_parser("build").set_defaults(func=cmd_build)
    p = sub.add_parser("browser")
    p.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    p.set_defaults(func=cmd_browser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
