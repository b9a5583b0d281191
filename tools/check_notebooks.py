"""Check (or fix) the chapter pairs: book/NN_topic.md is the source, book/NN_topic.ipynb is generated.

The check fails when
- a chapter in _toc.yml has no .md source or no .ipynb pair (plain Markdown pages without a
  kernelspec, such as book/references.md, are pages, not notebooks: they need no pair),
- the .ipynb cells differ from what jupytext makes of the .md (type, source, tags),
- the .ipynb carries outputs or execution counts (executed notebooks are never committed),
- the first code cell is not tagged `parameters` or does not set FAST.

Usage: python tools/check_notebooks.py [--fix]
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

import jupytext
import nbformat

# the book's root (where _toc.yml lives); overridable so that tests can check a scratch book
ROOT = Path(os.environ.get("TINYCODEC_BOOK_ROOT", Path(__file__).resolve().parents[1]))


def toc_pages(root: Path = ROOT) -> list[str]:
    """Every page stem listed in _toc.yml, in order (e.g. 'book/00_introduction')."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    stems = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        stems += [ch["file"] for ch in part.get("chapters", [])]
    return [str(Path(s).with_suffix("")) for s in stems]


def is_plain_page(stem: str, root: Path = ROOT) -> bool:
    """A Markdown page without a kernel (e.g. the bibliography): nothing to pair or execute."""
    md = root / f"{stem}.md"
    return md.exists() and "kernelspec:" not in md.read_text().split("\n---", 1)[0]


def toc_chapters(root: Path = ROOT) -> list[str]:
    """Notebook chapters listed in _toc.yml, in order: every page but the plain ones."""
    return [s for s in toc_pages(root) if not is_plain_page(s, root)]


def _cell_key(cell) -> tuple:
    tags = tuple(cell.get("metadata", {}).get("tags", []))
    return cell["cell_type"], cell["source"].strip(), tags


def problems_for(stem: str, root: Path = ROOT) -> list[str]:
    md, ipynb = root / f"{stem}.md", root / f"{stem}.ipynb"
    if not md.exists():
        return [f"{md.relative_to(root)}: listed in _toc.yml but missing"]
    if not ipynb.exists():
        return [f"{ipynb.relative_to(root)}: missing pair (run `nox -s sync`)"]
    expected = jupytext.read(md)
    actual = nbformat.read(ipynb, as_version=4)
    errors = []
    if [_cell_key(c) for c in expected.cells] != [_cell_key(c) for c in actual.cells]:
        errors.append(f"{ipynb.relative_to(root)}: out of sync with {md.name} (run `nox -s sync`)")
    for i, cell in enumerate(actual.cells):
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count")):
            errors.append(f"{ipynb.relative_to(root)}: cell {i} has committed outputs (run `nox -s sync`)")
            break
    code = [c for c in expected.cells if c["cell_type"] == "code"]
    if not code or "parameters" not in code[0].get("metadata", {}).get("tags", []):
        errors.append(f"{md.relative_to(root)}: the first code cell must be tagged `parameters`")
    else:
        names = {t.id for node in ast.walk(ast.parse(code[0]["source"]))
                 if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
        if "FAST" not in names:
            errors.append(f"{md.relative_to(root)}: the parameters cell must set FAST")
    return errors


def fix(stem: str, root: Path = ROOT) -> None:
    nb = jupytext.read(root / f"{stem}.md")
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"  # stable ids: regenerating changes nothing in git
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.metadata.pop("jupytext", None)
    jupytext.write(nb, root / f"{stem}.ipynb", fmt="ipynb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="regenerate every .ipynb from its .md")
    args = parser.parse_args(argv)
    stems = toc_chapters()
    orphans = sorted(
        str(p.relative_to(ROOT).with_suffix("")) for p in (ROOT / "book").glob("*.md")
        if str(p.relative_to(ROOT).with_suffix("")) not in toc_pages()
    )
    if args.fix:
        for stem in stems:
            if (ROOT / f"{stem}.md").exists():
                fix(stem)
    errors = [e for stem in stems for e in problems_for(stem)]
    errors += [f"{o}.md: not listed in _toc.yml" for o in orphans]
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"{len(stems)} chapters checked, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
