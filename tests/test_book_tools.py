"""The book pipeline fails when it should: a broken cell, or a changed `# NBVAL_CHECK_OUTPUT` output.

Runs tools/book.py (papermill, then nbval) on a scratch one-chapter book, as `nox -s tests` does
on the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = (ROOT / "book" / "00_introduction.md").read_text().split("\n---\n", 1)[0] + "\n---\n"

CHAPTER = HEADER + """
# Scratch

```{code-cell} ipython3
:tags: [parameters]

FAST = False
```

```{code-cell} ipython3
# NBVAL_CHECK_OUTPUT
import random
random.seed(0)
print(BODY)
```
"""


def _book(tmp_path: Path, body: str, *steps: str) -> list[subprocess.CompletedProcess]:
    (tmp_path / "book").mkdir(exist_ok=True)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/00_scratch\n")
    (tmp_path / "book" / "00_scratch.md").write_text(CHAPTER.replace("BODY", body))
    env = {**os.environ, "TINYCODEC_BOOK_ROOT": str(tmp_path)}
    fix = subprocess.run([sys.executable, str(ROOT / "tools" / "check_notebooks.py"), "--fix"], env=env)
    assert fix.returncode == 0
    return [
        subprocess.run([sys.executable, str(ROOT / "tools" / "book.py"), *step.split()],
                       env=env, capture_output=True, text=True)
        for step in steps
    ]


@pytest.mark.parametrize("body", ["random.random()", "f'{random.random():.4f}'"])
def test_seeded_output_reproduces(tmp_path, body):
    execute, nbval = _book(tmp_path, body, "execute --fast", "nbval")
    assert execute.returncode == 0, execute.stderr
    assert nbval.returncode == 0, nbval.stdout + nbval.stderr
    assert (tmp_path / "_build" / "executed" / "book" / "00_scratch.ipynb").exists()


def test_changed_checked_output_fails_nbval(tmp_path):
    execute, nbval = _book(tmp_path, "random.Random().random()", "execute --fast", "nbval")  # unseeded
    assert execute.returncode == 0, execute.stderr
    assert nbval.returncode != 0
    assert "1 failed" in nbval.stdout


def test_broken_cell_fails_execution_and_keeps_the_notebook(tmp_path):
    (execute,) = _book(tmp_path, "1 / 0", "execute --fast")
    assert execute.returncode != 0
    assert "ZeroDivisionError" in execute.stderr
    assert (tmp_path / "_build" / "executed" / "book" / "00_scratch.ipynb").exists()
