"""Sessions: `nox -s tests` (everything a change must pass), `book`, `notebooks`, `firmware`, `activity`, `wasm`, `lint`, `sync`.

Every session installs the package with the pinned environment in constraints.txt
(torch exactly 2.13.0: a range would pull a multi-GB CUDA build).
System packages (Chromium for the browser check, audio tools) are listed in
.ci/apt-packages.txt; sessions that need them install them when run as root and
otherwise say which command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
EXTRAS = ".[book,train,eval,export,dev]"
APT_PACKAGES = ROOT / ".ci" / "apt-packages.txt"

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "-e", EXTRAS)


def _ensure_apt(session: nox.Session) -> None:
    """Install missing Debian packages (Chromium, audio tools) when we are root."""
    wanted = [
        line.split("#")[0].strip()
        for line in APT_PACKAGES.read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    missing = [
        p for p in wanted
        if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0
    ]
    if not missing:
        return
    command = "apt-get update && apt-get install -y --no-install-recommends " + " ".join(missing)
    if shutil.which("apt-get") and os.geteuid() == 0:
        session.log(f"installing system packages: {' '.join(missing)}")
        session.run("bash", "-c", command, external=True)
    else:
        session.error(f"missing system packages {missing}; install them with: sudo {command}")


def _book(session: nox.Session, *args: str) -> None:
    session.run("python", "tools/book.py", *args)


def _npm(session: nox.Session) -> None:
    """onnxruntime-web for the browser page, exactly as web/package-lock.json pins it (npm registry)."""
    session.run("npm", "ci", "--prefix", "web", "--no-audit", "--no-fund", external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the package, tests, tools and benchmarks; chapter pairs in sync."""
    session.install(*CONSTRAINTS, "ruff", "jupytext")
    session.run("ruff", "check", "tinycodec", "tests", "tools", "benchmarks", "examples", "noxfile.py")
    session.run("python", "tools/check_notebooks.py")


@nox.session
def sync(session: nox.Session) -> None:
    """Regenerate every book/*.ipynb from its .md (run after editing a chapter)."""
    session.install(*CONSTRAINTS, "jupytext")
    session.run("python", "tools/check_notebooks.py", "--fix")


@nox.session
def notebooks(session: nox.Session) -> None:
    """Execute every chapter with papermill (FAST=True), then nbval-check the executed notebooks."""
    _install(session)
    _book(session, "data")
    _book(session, "execute", "--fast")
    _book(session, "nbval")


@nox.session
def book(session: nox.Session) -> None:
    """Execute the chapters (papermill, reused when unchanged) and build the HTML book.

    `nox -s book` runs the chapters in FAST mode (minutes); `nox -s book -- --full`
    runs them at their full default parameters (a laptop-CPU class run).
    """
    _install(session)
    _npm(session)
    _book(session, "data")
    _book(session, "execute", *(["--full"] if "--full" in session.posargs else ["--fast"]))
    _book(session, "build")
    session.log(f"open {ROOT / '_build' / 'html' / 'index.html'}")


@nox.session
def tests(session: nox.Session) -> None:
    """Everything a change must pass: lint, unit tests, notebooks (papermill + nbval),
    the book build and the headless-Chromium check of every page."""
    _ensure_apt(session)
    _install(session)
    session.run("ruff", "check", "tinycodec", "tests", "tools", "benchmarks", "examples", "noxfile.py")
    session.run("python", "tools/check_notebooks.py")
    _book(session, "data")  # the demo corpus: real clips that tests and chapters read
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
    _book(session, "execute", "--fast")
    _book(session, "nbval")
    _npm(session)
    _book(session, "build")
    _book(session, "wording")
    _book(session, "browser")
    _book(session, "web")


@nox.session
def firmware(session: nox.Session) -> None:
    """C int8 encoder: export headers, host tests (ctest), Cortex-M4 under QEMU with instruction
    counts; writes _build/firmware.json (`nox -s firmware -- --update` rewrites benchmarks/firmware.json). Needs the apt toolchain in .ci/apt-packages.txt and
    fetches the demo corpus (calibration + golden-vector audio) like the book sessions."""
    _ensure_apt(session)
    _install(session)
    _book(session, "data")
    session.run("python", "tools/firmware.py", *session.posargs)


@nox.session
def activity(session: nox.Session) -> None:
    """The class activity: chapter 04 FAST at three learning rates, one table and one plot in _build/activity.

    `nox -s activity -- book/04_training --grid PRESET=ultra_tiny,tiny --out _build/activity` runs
    another grid (the arguments after `--` replace the default ones).
    """
    _install(session)
    _book(session, "data")
    args = session.posargs or ["book/04_training", "--grid", "LR=3e-4,1e-3,3e-3", "--out", "_build/activity"]
    session.run("python", "tools/class_activity.py", *args)


@nox.session
def wasm(session: nox.Session) -> None:
    """The firmware's C encoder compiled to WebAssembly (Debian's clang + wasi-libc), checked in Node
    against the Python int8 reference: _build/wasm/tinycodec_encoder.wasm."""
    _ensure_apt(session)
    _install(session)
    _book(session, "data")
    session.run("python", "tools/wasm.py", *session.posargs)
    session.run("pytest", "-q", "tests/test_wasm.py")
