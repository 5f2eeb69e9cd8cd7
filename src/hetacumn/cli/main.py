"""The ``hetacumn`` command: a registry of subcommands, one module each.

Each module in ``COMMANDS`` has a docstring (its help; the first line is the summary), an
``add_args(parser)`` and a ``main(args) -> int | None``. Errors a user can fix are raised as
:class:`hetacumn.errors.InputError` and printed as a single line with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hetacumn import __version__
from hetacumn.errors import InputError

COMMANDS = ["info", "simulate", "reconstruct", "downsample", "train", "infer", "volume", "evaluate", "demo", "analyze",
            "select"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hetacumn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hetacumn {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"hetacumn.cli.{name}")
        doc = (module.__doc__ or name).strip()
        sub = subparsers.add_parser(
            name, help=doc.splitlines()[0], description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_args(sub)
        sub.set_defaults(func=module.main)
    return parser


def _flush_subnormals() -> None:
    """Treat subnormal floats (below 1.2e-38) as zero in every torch operation of the process: x86 CPUs handle
    them in microcode, ~7x slower (BENCHMARKS.md, "Subnormal filter weights"); no result here depends on them."""
    import torch  # here, so that the parser (--help) does not wait for torch

    torch.set_flush_denormal(True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    _flush_subnormals()
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        print(f"hetacumn: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. a full disk or a vanished file system while writing
        print(f"hetacumn: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hetacumn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
