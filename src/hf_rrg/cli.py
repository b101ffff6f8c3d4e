"""The `hf-rrg` command line: one sub-command group per area, each registered by its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines `register(subparsers)`, adding its commands with `set_defaults(func=...)`.
# Keep the modules light to import: heavy imports belong inside the command functions.
_COMMAND_MODULES = (
    "hf_rrg.coatt.commands",
    "hf_rrg.convert.commands",
    "hf_rrg.data.commands",
    "hf_rrg.dcrrg.commands",
    "hf_rrg.hub.commands",
    "hf_rrg.ithn.commands",
    "hf_rrg.labeling.commands",
    "hf_rrg.metrics.commands",
    "hf_rrg.training.commands",
    "hf_rrg.xpronet.commands",
    "hf_rrg.asgk.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-rrg", description="Radiology report generation with Hugging Face models."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as error:
        print(f"hf-rrg {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
