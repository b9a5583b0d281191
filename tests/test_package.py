"""The project's scaffolding: light import, the CLI, and the chapter-pair check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import check_notebooks  # noqa: E402

HEAVY = ["matplotlib", "IPython", "jupyter_client", "ipywidgets", "papermill", "tensorboard"]


def test_import_is_light():
    code = f"import sys, tinycodec; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_cli_version_and_help():
    out = subprocess.run([sys.executable, "-m", "tinycodec", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "tinycodec 0.1.0"
    out = subprocess.run([sys.executable, "-m", "tinycodec"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage: tinycodec" in out.stdout


def test_unknown_public_name_is_attribute_error():
    import tinycodec

    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        tinycodec.NoSuchThing  # noqa: B018


def test_repository_chapters_are_in_sync():
    errors = [e for stem in check_notebooks.toc_chapters() for e in check_notebooks.problems_for(stem)]
    assert errors == []


CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
    jupytext_version: 1.19.6
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{code-cell} ipython3
:tags: [parameters]

FAST = False
```

```{code-cell} ipython3
print(1 + 1)
```
"""


@pytest.fixture
def book(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/00_x\n")
    (tmp_path / "book" / "00_x.md").write_text(CHAPTER)
    check_notebooks.fix("book/00_x", tmp_path)
    return tmp_path


def test_pair_check_accepts_a_fresh_pair(book):
    assert check_notebooks.problems_for("book/00_x", book) == []


def test_pair_check_catches_an_edited_source(book):
    md = book / "book" / "00_x.md"
    md.write_text(md.read_text().replace("1 + 1", "1 + 2"))
    assert any("out of sync" in e for e in check_notebooks.problems_for("book/00_x", book))


def test_pair_check_catches_committed_outputs(book):
    import nbformat

    path = book / "book" / "00_x.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nbformat.write(nb, path)
    assert any("committed outputs" in e for e in check_notebooks.problems_for("book/00_x", book))


def test_pair_check_requires_a_parameters_cell(book):
    md = book / "book" / "00_x.md"
    md.write_text(md.read_text().replace(":tags: [parameters]\n", ""))
    check_notebooks.fix("book/00_x", book)
    assert any("tagged `parameters`" in e for e in check_notebooks.problems_for("book/00_x", book))


def test_loading_the_flagship_does_not_import_torch_dynamo():
    # building a model on the meta device must not run torch's decompositions: they import
    # torch._dynamo, seconds and tens of MiB at every start of the command line
    code = ("import sys, tinycodec; tinycodec.TinyCodec(); "
            "sys.exit(1 if 'torch._dynamo' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr or "torch._dynamo was imported"


def test_cli_encode_and_decode_import_only_what_they_use(tmp_path):
    # what makes the command line start slowly: each of these costs tens of ms to seconds per call
    # (benchmarks/bench_cli.py measures the CPU time against `import torch`)
    import numpy as np
    import soundfile as sf

    wav, tcz = tmp_path / "a.wav", tmp_path / "a.tcz"
    sf.write(wav, (np.random.default_rng(0).standard_normal(8000) * 3000).astype(np.int16), 16000)
    unwanted = ["torch._dynamo", "torch.onnx", "onnxruntime", "tinycodec.train", "tinycodec.eval"]
    for argv in (["encode", str(wav), str(tcz)], ["decode", str(tcz), str(tmp_path / "b.wav")]):
        code = (f"import sys; from tinycodec.cli import main; rc = main({argv!r}); "
                f"print([m for m in {unwanted!r} if m in sys.modules]); sys.exit(rc)")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == "[]", (argv[0], proc.stdout)
