"""Class activity: run one chapter over a small parameter grid and compare the runs in one table and one plot.

    python tools/class_activity.py book/04_training --grid LR=3e-4,1e-3,3e-3 --out _build/activity
    python tools/class_activity.py book/04_training --grid PRESET=ultra_tiny,tiny --grid LR=1e-3,3e-3

Every grid point is one papermill run of the chapter with ``FAST=True`` (``--full`` for the chapter's
full parameters) plus the point's parameters, executed in the chapter's folder like
``tools/book.py execute`` does, into ``OUT/runs/NAME.ipynb``. Several ``--grid`` options form their
product; ``--set NAME=VALUE`` fixes a parameter for every run. Values are read as int, float,
bool (True/False) or None, anything else as a string.

The numbers of a run are the JSON line printed by the ONE cell tagged ``activity-result`` in the
executed notebook. They are gathered into ``OUT/results.csv`` and ``OUT/results.md`` (the Markdown
table is also printed) and plotted into ``OUT/results.png``: one bar per run for ``--metric``
(default ``val_mel_last``) and, when the JSON holds a curve (``--curve``, default ``curve``: a list
of numbers, a list of ``[x, y]`` pairs or a ``{"x_name": [...], "y_name": [...]}`` dict), one line
per run.

Exit status: 0 when every run gave its numbers, 1 when some run failed (the others still run and
are reported), 2 for a usage error found before anything runs (unknown chapter, a parameter the
chapter does not have, no ``activity-result`` cell).
"""

from __future__ import annotations

import argparse
import ast
import csv
import itertools
import json
import math
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "activity-result"
KERNEL = "python3"  # the kernel tools/book.py executes the chapters with


class ActivityError(Exception):
    """A problem reported as one line: bad grid, unknown chapter or parameter, missing result cell."""


# ---------------------------------------------------------------------------------------------- grid


def parse_value(text: str):
    """``"3"`` -> 3, ``"3e-4"`` -> 0.0003, ``"true"`` -> True, ``"None"`` -> None, anything else the string."""
    s = text.strip()
    lowered = s.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            value = kind(s)
        except ValueError:
            continue
        if kind is float and not math.isfinite(value):
            break  # "nan", "inf": keep as text rather than a number no chapter wants
        return value
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]  # "'1e-3'" forces a string
    return s


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _split_assignment(spec: str, option: str) -> tuple[str, str]:
    name, sep, values = spec.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise ActivityError(f"{option} {spec!r}: expected NAME=VALUE[,VALUE...], e.g. {option} LR=3e-4,1e-3")
    return name, values


def parse_grid(specs: list[str]) -> list[tuple[str, list[tuple[str, object]]]]:
    """``["LR=3e-4,1e-3", "PRESET=tiny"]`` -> ``[("LR", [("3e-4", 0.0003), ("1e-3", 0.001)]), ("PRESET", ...)]``.

    Each value keeps its text (for run names) next to the parsed value (for papermill).
    """
    grid, seen = [], set()
    for spec in specs:
        name, values = _split_assignment(spec, "--grid")
        if name in seen:
            raise ActivityError(f"--grid {name} is given twice: put all its values in one option ({name}=a,b,c)")
        seen.add(name)
        texts = [v.strip() for v in values.split(",")]
        if not texts or any(t == "" for t in texts):
            raise ActivityError(f"--grid {spec!r}: empty value (expected {name}=a,b,c)")
        if len(set(texts)) != len(texts):
            raise ActivityError(f"--grid {spec!r}: a value is repeated")
        grid.append((name, [(t, parse_value(t)) for t in texts]))
    return grid


def parse_set(specs: list[str]) -> dict[str, object]:
    """``["STEPS=40"]`` -> ``{"STEPS": 40}``: parameters fixed for every run."""
    fixed = {}
    for spec in specs:
        name, value = _split_assignment(spec, "--set")
        fixed[name] = parse_value(value)
    return fixed


def grid_points(grid) -> list[tuple[str, dict[str, object]]]:
    """The product of the grid as ``(run name, {parameter: value})``, first option varying slowest."""
    if not grid:
        return [("default", {})]
    names = [name for name, _ in grid]
    points = []
    for combo in itertools.product(*(values for _, values in grid)):
        run = "_".join(f"{n}-{text}" for n, (text, _) in zip(names, combo))
        run = re.sub(r"[^A-Za-z0-9._-]+", "-", run)
        points.append((run, {n: value for n, (_, value) in zip(names, combo)}))
    return points


# ------------------------------------------------------------------------------------------ chapter


def resolve_chapter(chapter: str, root: Path = ROOT) -> Path:
    """The notebook papermill runs for ``book/04_training`` (or ``04_training``, or a .md/.ipynb path).

    The chapter's ``.ipynb`` pair is preferred, as ``tools/book.py execute`` does; a MyST ``.md``
    without a pair is converted by jupytext.
    """
    given = Path(chapter)
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, root / given, root / "book" / given]
    for base in candidates:
        stem = base.with_suffix("") if base.suffix in {".md", ".ipynb"} else base
        for suffix in (".ipynb", ".md"):
            path = stem.with_suffix(suffix)
            if path.is_file():
                return path
    known = sorted(f"book/{p.stem}" for p in (root / "book").glob("[0-9][0-9]_*.md"))
    raise ActivityError(f"unknown chapter {chapter!r}: no .ipynb or .md of that name"
                        + (f" (chapters: {', '.join(known)})" if known else ""))


def read_notebook(path: Path):
    import nbformat

    if path.suffix == ".md":
        import jupytext

        return jupytext.read(path)
    return nbformat.read(path, as_version=4)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def chapter_parameters(nb, label: str) -> dict[str, str]:
    """Names the chapter's ``parameters`` cell assigns, with the source text of their defaults."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in _tags(c)]
    if not cells:
        raise ActivityError(f"{label} has no code cell tagged `parameters`: papermill cannot set its parameters")
    source = cells[0].source
    params = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name) and node.value is not None:
                params[t.id] = ast.get_source_segment(source, node.value) or ""
    return params


def check_parameters(nb, names, label: str) -> dict[str, str]:
    """Fail with one line unless every name is a parameter of the chapter; returns its parameters."""
    params = chapter_parameters(nb, label)
    missing = [n for n in names if n not in params]
    if missing:
        raise ActivityError(f"{label} has no parameter {', '.join(missing)} in its `parameters` cell "
                            f"(it has: {', '.join(params)})")
    return params


def result_cell_index(nb, label: str) -> int:
    found = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and RESULT_TAG in _tags(c)]
    if not found:
        raise ActivityError(f"{label} has no code cell tagged `{RESULT_TAG}` (one cell that prints the run's "
                            "numbers as one JSON line)")
    if len(found) > 1:
        raise ActivityError(f"{label} has {len(found)} cells tagged `{RESULT_TAG}`; it must have exactly one")
    return found[0]


def read_result(nb, label: str) -> dict:
    """The JSON object printed by the executed notebook's ``activity-result`` cell (its last JSON line)."""
    cell = nb.cells[result_cell_index(nb, label)]
    text = ""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            text += "".join(out.get("text", ""))
        elif out.get("output_type") in {"execute_result", "display_data"}:
            text += "\n" + "".join(out.get("data", {}).get("text/plain", "")) + "\n"
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise ActivityError(f"{label}: the `{RESULT_TAG}` cell printed no JSON object line "
                        f"(its output: {text.strip()[-200:]!r})")


# ---------------------------------------------------------------------------------------------- runs


def run_one(src: Path, out: Path, parameters: dict, cwd: Path, timeout: int) -> None:
    import papermill

    papermill.execute_notebook(
        str(src), str(out), parameters=parameters, cwd=str(cwd),
        kernel_name=KERNEL, progress_bar=False, execution_timeout=timeout,
    )


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    errors = [ansi.sub("", ln) for ln in lines if re.search(r"(Error|Exception)\b", ansi.sub("", ln))]
    return (errors[-1] if errors else ansi.sub("", lines[-1]) if lines else type(exc).__name__)[:300]


def run_activity(chapter: str, grid_specs: list[str], out_dir: Path, set_specs: list[str] = (),
                 fast: bool = True, timeout: int = 900, log=print) -> tuple[list[dict], list[str]]:
    """Check everything, then run each grid point; returns (one row per successful run, failed run names)."""
    grid, fixed = parse_grid(list(grid_specs)), parse_set(list(set_specs))
    overlap = set(fixed) & {name for name, _ in grid}
    if overlap:
        raise ActivityError(f"{', '.join(sorted(overlap))} is both in --grid and --set")
    src = resolve_chapter(chapter)
    label = str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else str(src)
    md = src.with_suffix(".md")
    if src.suffix == ".ipynb" and md.exists() and md.stat().st_mtime > src.stat().st_mtime + 1:
        log(f"[activity] note: {md.name} is newer than {src.name}; this runs {src.name} "
            "(after editing a chapter: python tools/check_notebooks.py --fix)", file=sys.stderr)
    nb = read_notebook(src)
    check_parameters(nb, [n for n, _ in grid] + list(fixed), label)
    result_cell_index(nb, label)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".md":  # papermill reads notebooks: convert a MyST source once
        import nbformat

        converted = runs_dir / f"_{src.stem}.source.ipynb"
        nbformat.write(nb, converted)
        src_nb = converted
    else:
        src_nb = src

    points = grid_points(grid)
    rows, failed = [], []
    log(f"[activity] {label}: {len(points)} runs with FAST={fast}"
        + (f" and {fixed}" if fixed else "") + f" -> {runs_dir}")
    for i, (name, point) in enumerate(points, 1):
        parameters = {"FAST": fast, **fixed, **point}
        shown = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "chapter defaults"
        log(f"[activity] run {i}/{len(points)} {name}: {shown} ...", flush=True)
        out = runs_dir / f"{name}.ipynb"
        start = time.perf_counter()
        try:
            run_one(src_nb, out, parameters, src.parent, timeout)
            result = read_result(read_notebook(out), f"run {name}")
        except Exception as exc:  # keep going: report every failing run, keep its notebook
            failed.append(name)
            log(f"[activity] FAILED run {name} ({out}): {_one_line(exc)}", file=sys.stderr)
            continue
        seconds = round(time.perf_counter() - start, 1)
        rows.append({"run": name, **point, **result, "run_seconds": seconds})
        scalars = ", ".join(f"{k}={_fmt(v)}" for k, v in result.items() if _is_scalar(v))
        log(f"[activity] run {i}/{len(points)} {name}: {seconds} s: {scalars}", flush=True)
    return rows, failed


# ----------------------------------------------------------------------------------------- reporting


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def table_columns(rows: list[dict]) -> list[str]:
    """Scalar columns in first-seen order (curves and other lists stay out of the table)."""
    columns = []
    for row in rows:
        for k, v in row.items():
            if k not in columns and _is_scalar(v):
                columns.append(k)
    return [c for c in columns if all(_is_scalar(r.get(c)) for r in rows)]


def write_csv(rows: list[dict], path: Path) -> None:
    columns = table_columns(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict]) -> str:
    columns = table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def curve_of(row: dict, key: str) -> tuple[list, list, str, str] | None:
    """(x, y, x label, y label) of a run's curve, or None: see the module docstring for the forms."""
    value = row.get(key)
    if isinstance(value, dict):
        lists = [(k, v) for k, v in value.items() if isinstance(v, list)]
        if len(lists) >= 2 and len(lists[0][1]) == len(lists[1][1]):
            (xn, x), (yn, y) = lists[:2]
            return x, y, xn, yn
        if len(lists) == 1:
            return list(range(len(lists[0][1]))), lists[0][1], "index", lists[0][0]
        return None
    if isinstance(value, list) and value:
        if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
            return [p[0] for p in value], [p[1] for p in value], "x", key
        if all(isinstance(p, (int, float)) for p in value):
            return list(range(len(value))), value, "index", key
    return None


def plot(rows: list[dict], metric: str, curve_key: str, path: Path, title: str) -> bool:
    """Bars of ``metric`` per run, and the runs' curves beside them when they have one."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend is needed to write a PNG

    bars = [(r["run"], r[metric]) for r in rows if isinstance(r.get(metric), (int, float))
            and not isinstance(r.get(metric), bool)]
    curves = [(r["run"], c) for r in rows if (c := curve_of(r, curve_key)) is not None]
    if not bars and not curves:
        return False
    panels = int(bool(bars)) + int(bool(curves))
    fig = Figure(figsize=(6 * panels, 3.8), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if bars:
        ax = axes[0]
        names, values = zip(*bars)
        positions = range(len(names))
        ax.bar(positions, values, color=[f"C{i % 10}" for i in positions])
        for p, v in zip(positions, values):
            ax.annotate(f"{v:.4g}", (p, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(positions), names, rotation=20 if len(names) > 3 else 0, ha="right" if len(names) > 3
                      else "center", fontsize=8)
        ax.set(ylabel=metric, title=f"{metric} per run")
        ax.grid(axis="y", alpha=0.3)
    if curves:
        ax = axes[-1]
        color = {r["run"]: f"C{i % 10}" for i, r in enumerate(r for r in rows if r["run"] in dict(bars))}
        for i, (name, (x, y, _, _)) in enumerate(curves):
            ax.plot(x, y, "o-", ms=3, color=color.get(name, f"C{i % 10}"), label=name)
        ax.set(xlabel=curves[0][1][2], ylabel=curves[0][1][3], title=f"{curve_key} per run")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:4]) + "\n")
    parser.add_argument("chapter", help="chapter, e.g. book/04_training")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="a parameter and its values; several --grid options form the product")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter fixed for every run")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "activity", help="output folder")
    parser.add_argument("--metric", default="val_mel_last", help="result key the bar chart shows")
    parser.add_argument("--curve", default="curve", help="result key of a per-run curve (plotted when present)")
    parser.add_argument("--full", action="store_true", help="FAST=False: the chapter's full parameters (slow)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one cell may run before the run fails")
    args = parser.parse_args(argv)

    def log(*a, file=sys.stdout, **kw):
        print(*a, file=file, **kw)

    try:
        rows, failed = run_activity(args.chapter, args.grid, args.out, args.set, fast=not args.full,
                                    timeout=args.timeout, log=log)
    except ActivityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if rows:
        write_csv(rows, args.out / "results.csv")
        table = markdown_table(rows)
        (args.out / "results.md").write_text(table + "\n")
        print(table)
        if args.metric not in rows[0]:
            print(f"[activity] no {args.metric!r} in the results (keys: {', '.join(rows[0])}); "
                  "choose one with --metric", file=sys.stderr)
        png = args.out / "results.png"
        if plot(rows, args.metric, args.curve, png, f"{args.chapter}: {len(rows)} runs"):
            print(f"[activity] wrote {args.out / 'results.csv'}, {args.out / 'results.md'}, {png}")
        else:
            print(f"[activity] wrote {args.out / 'results.csv'}, {args.out / 'results.md'} (nothing to plot)")
    if failed:
        print(f"[activity] {len(failed)} of {len(failed) + len(rows)} runs failed: {', '.join(failed)} "
              f"(their notebooks are in {args.out / 'runs'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
