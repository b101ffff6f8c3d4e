"""A `hf-rrg NAME COMMAND` group of sub-commands (a method's stages and tools), shared by the commands modules."""

from __future__ import annotations

import argparse
from typing import Any


def command_group(subparsers: argparse._SubParsersAction, name: str, help: str, metavar: str = "COMMAND") -> Any:
    """Add `hf-rrg NAME` (which prints its help, exit status 2, when no sub-command is given); returns the group's
    sub-parsers, whose commands land in `args.<name>_command`."""
    group = subparsers.add_parser(name, help=help)
    group.set_defaults(func=lambda args: group.print_help() or 2)
    return group.add_subparsers(dest=f"{name}_command", metavar=metavar)
