"""The ``tinycodec`` command line: this package, one module per sub-command group.

Each module listed in ``COMMANDS`` defines ``register(subparsers)``, which adds its
sub-command and sets ``func`` on the parser; the module is imported only when the
command line is parsed, so ``tinycodec --help`` stays fast. The modules parse arguments and
print; what they run lives in the library (``tinycodec.export.calibration.load_for_export``,
``tinycodec.pretrained.load_model``, ``tinycodec.eval.evaluate``, ...).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tinycodec import __version__

# modules that contribute sub-commands (each defines ``register(subparsers)``)
COMMANDS = [
    "tinycodec.cli.data",
    "tinycodec.cli.codec",
    "tinycodec.cli.eval",
    "tinycodec.cli.train",
    "tinycodec.cli.export",
    "tinycodec.cli.stream",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinycodec",
        description="Tiny neural audio codecs: data, training, evaluation, streaming and deployment.",
    )
    parser.add_argument("--version", action="version", version=f"tinycodec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # user-facing errors: one clear line, no traceback
        print(f"tinycodec: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
