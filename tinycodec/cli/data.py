"""``tinycodec data list`` and ``tinycodec data fetch NAME --to DIR [--force]``.

Notebook: book/01_data.md
"""

from __future__ import annotations

import logging
import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="list and fetch audio corpora")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list the corpus recipes")
    ls.set_defaults(func=_list)
    f = sub.add_parser("fetch", help="download a corpus and write its manifest.csv (idempotent)")
    f.add_argument("name", help="recipe name (see `tinycodec data list`)")
    f.add_argument("--to", default=None, help="target folder (default: data/NAME)")
    f.add_argument("--force", action="store_true", help="rebuild even when the manifest is up to date")
    f.set_defaults(func=_fetch)


def _list(args) -> int:
    from tinycodec.data.corpora import list_recipes

    for r in list_recipes():
        print(f"{r.name:16s} {r.download:>7s}  {r.licence:34s} {r.description}")
    return 0


def _fetch(args) -> int:
    from tinycodec.data.corpora import RECIPES, fetch
    from tinycodec.data.corpora.manifest import is_up_to_date, read_manifest, totals

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    to = args.to or f"data/{args.name}"
    if args.name in RECIPES and not args.force and is_up_to_date(to, args.name):
        print(f"{args.name}: up to date ({to}/manifest.csv)")
        return 0
    t0 = time.perf_counter()
    path = fetch(args.name, to, force=args.force)
    stats = totals(read_manifest(path))
    parts = ", ".join(f"{k} {v['files']} files {v['hours'] * 60:.1f} min" for k, v in stats.items())
    print(f"{args.name}: wrote {path} in {time.perf_counter() - t0:.1f} s ({parts})")
    return 0
