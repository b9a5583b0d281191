"""The package's import graph: no circles, and inference never imports training.

The graph is read from the source with ``ast`` (every ``import``, also the deferred ones inside
functions, except those under ``if TYPE_CHECKING:``): a deferred import still ties two modules
together, it only hides the circle until a call runs it. Importing ``a.b.c`` runs the
``__init__`` of ``a.b`` first, so an edge to a module is also an edge to each package above it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tinycodec"


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _imported_modules(name: str, is_package: bool, tree: ast.AST, modules: set[str]) -> set[str]:
    """The package modules ``name`` imports: ``from pkg import submodule`` names the submodule,
    ``from module import function`` the module."""
    skip = _type_checking_nodes(tree)
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                out.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    resolved = set()
    for imported in out:
        while imported and imported not in modules:  # `import a.b.function`-style leftovers -> a.b
            imported = imported.rpartition(".")[0]
        if imported:
            resolved.add(imported)
    return resolved


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, and the packages above them whose ``__init__``
    the import runs (a module's own enclosing packages are already running: not an edge)."""
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, is_package = _module_name(path)
        sources[name] = (is_package, ast.parse(path.read_text(), str(path)))
    graph = {}
    for name, (is_package, tree) in sources.items():
        targets = set()
        for imported in _imported_modules(name, is_package, tree, set(sources)):
            targets.add(imported)  # named explicitly: an edge even to an enclosing package
            parent = imported.rpartition(".")[0]
            while parent:
                if not name.startswith(parent + "."):
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_resolves_relative_and_parent_package_edges():
    graph = import_graph()
    # `from tinycodec.bitstream.errors import ...` is an edge to the module and to its package
    assert {"tinycodec.bitstream.errors"} <= graph["tinycodec.bitstream.packing"]
    assert "tinycodec.train.loop" in graph["tinycodec.train"]


def test_package_imports_have_no_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_package_root_holds_only_entry_modules():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


INFERENCE = ["tinycodec.pretrained", "tinycodec.codec", "tinycodec.models", "tinycodec.bitstream",
             "tinycodec.streaming", "tinycodec.export"]


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_never_imports_training_statically(module):
    graph = import_graph()
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    assert not any(m == "tinycodec.train" or m.startswith("tinycodec.train.") for m in seen)


def test_loading_a_model_leaves_training_unimported():
    # (tqdm is no marker: torch.hub imports it on its own)
    code = ("import sys\n"
            "from tinycodec.codec import TinyCodec\n"
            "from tinycodec.pretrained import load_model\n"
            "load_model('ultra_tiny')\n"
            "TinyCodec('ultra_tiny')\n"
            "bad = sorted(m for m in sys.modules if m == 'tinycodec.train' or m.startswith('tinycodec.train.'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == ""


def test_every_folder_is_a_regular_package():
    # a folder without __init__.py is a namespace package: setuptools' find would leave it out of a wheel
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert sorted(str(f.relative_to(PACKAGE)) for f in folders if not (f / "__init__.py").exists()) == []


def folder_graph() -> dict[str, set[str]]:
    """Subpackage -> the other subpackages its modules import (the root's entry modules left out)."""
    out: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] == "__main__":
            continue
        deps = out.setdefault(parts[1], set())
        deps.update(t.split(".")[1] for t in targets if t.count(".") >= 1 and t.split(".")[1] != parts[1])
    return out


def test_folders_are_layers():
    # the folders are the architecture: each one imports only folders below it, none imports back up
    folders = folder_graph()
    cycle = find_cycle(folders)
    assert cycle is None, "folders import each other: " + " -> ".join(cycle)
    assert folders["audio"] == folders["modules"] == folders["quantization"] == set()  # the ground floor
    assert "train" not in set().union(*(folders[f] for f in folders if f not in ("train", "cli")))
    assert not any("cli" in deps for deps in folders.values())
