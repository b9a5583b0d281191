"""The book pipeline fails when it should: a broken cell, or a changed `# NBVAL_CHECK_OUTPUT` output.

Runs tools/book.py (papermill, then nbval) on a scratch one-chapter book, as `nox -s tests` does
on the real one.
"""

from __future__ import annotations

import os
import re
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


# -- the loudness floor on every player ------------------------------------------------------------

sys.path.insert(0, str(ROOT / "tools"))


def _player_notebook(*htmls: str, raw_audio: bool = False):
    import nbformat

    outputs = [nbformat.v4.new_output("display_data", data={"text/html": h, "text/plain": "<Audio>"})
               for h in htmls]
    if raw_audio:
        outputs.append(nbformat.v4.new_output("display_data", data={"audio/wav": "AAAA"}))
    cell = nbformat.v4.new_code_cell("player(x, 16000)", outputs=outputs)
    return nbformat.v4.new_notebook(cells=[cell])


def _html(wav) -> str:
    from tinycodec.audio.excerpt import player

    return player(wav, 16000)._repr_html_()


def test_audio_check_passes_a_loud_player_and_refuses_quiet_or_unannotated_ones():
    import math

    import torch
    from IPython.display import Audio

    from book import audio_problems

    t = torch.arange(16000) / 16000
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t)
    room_noise = 10 ** (-70 / 20) * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    assert audio_problems(_player_notebook(_html(tone))) == []
    quiet = audio_problems(_player_notebook(_html(room_noise)))
    assert len(quiet) == 1 and "too quiet" in quiet[0]
    # IPython's own player normalizes: its level before normalization is unknown, so it is refused
    plain = audio_problems(_player_notebook(Audio(room_noise.numpy(), rate=16000)._repr_html_()))
    assert len(plain) == 1 and "unknown" in plain[0]
    assert any("raw audio" in p for p in audio_problems(_player_notebook(raw_audio=True)))
    # players inside other HTML (the listening grid of chapter 05) are found too
    grid = f"<table><tr><td>{_html(tone)}</td><td>{_html(room_noise)}</td></tr></table>"
    assert len(audio_problems(_player_notebook(grid))) == 1


def test_execute_fails_on_a_silent_player(tmp_path):
    body = "__import__('tinycodec.audio.excerpt').audio.excerpt.player(__import__('torch').zeros(16000), 16000)"
    chapter = CHAPTER.replace("print(BODY)", body)
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/00_scratch\n")
    (tmp_path / "book" / "00_scratch.md").write_text(chapter)
    env = {**os.environ, "TINYCODEC_BOOK_ROOT": str(tmp_path)}
    assert subprocess.run([sys.executable, str(ROOT / "tools" / "check_notebooks.py"), "--fix"], env=env).returncode == 0
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "book.py"), "execute", "--fast"],
                         env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "too quiet" in run.stderr


# -- plain pages, the browser verdicts ----------------------------------------------------------------

def test_plain_markdown_pages_are_pages_not_chapters(tmp_path):
    from check_notebooks import problems_for, toc_chapters, toc_pages

    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/00_scratch\nchapters:\n  - file: book/references\n")
    (tmp_path / "book" / "00_scratch.md").write_text(CHAPTER.replace("BODY", "1"))
    (tmp_path / "book" / "references.md").write_text("# References\n\n```{bibliography}\n```\n")
    assert toc_pages(tmp_path) == ["book/00_scratch", "book/references"]
    assert toc_chapters(tmp_path) == ["book/00_scratch"]
    assert problems_for("book/00_scratch", tmp_path)  # the chapter still needs its .ipynb pair


def _page(**overrides) -> dict:
    info = {"broken_images": [], "error_outputs": 0, "output_text": "", "audio": 0, "audio_levels": [],
            "formulas": 3, "untypeset": [], "raw_tex": [], "page_scrolls_sideways": False, "clipped": []}
    return {**info, **overrides}


def test_browser_verdicts():
    from browser_check import page_problems

    assert page_problems(_page(), "mathjax2", [], False) == []
    assert any("MathJax did not run" in p for p in page_problems(_page(), "timeout", [], False))
    assert any("raw TeX" in p for p in page_problems(_page(raw_tex=["\\(\\log_2 K\\)"]), "mathjax2", [], False))
    assert any("leave the machine" in p
               for p in page_problems(_page(), "mathjax2", ["https://cdn.example/x.js"], False))
    quiet = _page(audio=1, audio_levels=[{"rms": -70.0, "active": 0.0}])
    assert any("too quiet" in p for p in page_problems(quiet, "mathjax2", [], True))
    assert any("no <audio>" in p for p in page_problems(_page(), "mathjax2", [], True))
    assert any("off the text column" in p for p in page_problems(_page(clipped=["table."]), "mathjax2", [], False))


def test_internal_wording_is_found_in_visible_text_only():
    import book

    page = ("<html><head><script>var s = 'our machines';</script></head><body><p>Built on <b>our "
            "machines</b> &amp; friends.</p><p>Fine text.</p></body></html>")
    found = book.internal_wording(book.visible_text(page), "p.html")
    assert len(found) == 1 and "'our machines'" in found[0]  # the script's copy is not visible text
    assert book.internal_wording(book.visible_text("<p>The codec at 2.25 kbit/s.</p>"), "q.html") == []


def test_readme_cards_and_cli_help_have_no_internal_wording():
    import book

    problems = book.internal_wording(book.cli_help_text(), "cli")
    for doc in [book.ROOT / "README.md", *sorted((book.ROOT / "tinycodec" / "pretrained").glob("*.md"))]:
        problems += book.internal_wording(doc.read_text(), doc.name)
    assert problems == [], "\n".join(problems)


def exercises_and_solutions(text: str) -> tuple[int, int]:
    """Numbered exercises under a chapter's "## Exercises" heading, and their "Solution" dropdowns."""
    section = text.split("\n## Exercises", 1)[1].split("\n## ", 1)[0] if "\n## Exercises" in text else ""
    return len(re.findall(r"^\d+\. ", section, flags=re.M)), len(re.findall(r":::\{dropdown\} Solution", section))


def test_every_exercise_has_a_solution():
    counted = {}
    for chapter in sorted((ROOT / "book").glob("0*.md")):
        n_ex, n_sol = exercises_and_solutions(chapter.read_text())
        counted[chapter.stem] = n_ex
        assert n_sol == n_ex, f"{chapter.name}: {n_ex} exercises, {n_sol} solutions"
    assert sum(counted.values()) >= 40  # the chapters do have exercises: the count above is not vacuous


def test_a_missing_solution_is_counted():
    text = "# A chapter\n\n## Exercises\n\n1. Do this.\n\n   :::{dropdown} Solution\n   x\n   :::\n\n2. And that.\n\n## Next\n"
    assert exercises_and_solutions(text) == (2, 1)
