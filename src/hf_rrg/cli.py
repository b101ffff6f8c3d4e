"""The `hf-rrg` command line: one sub-command group per area, each registered by its own module.

Errors that say what is wrong with the user's input (hf-rrg's own `ValueError` subclasses, missing or unreadable
files, missing optional packages) are printed as one line naming the sub-command, ``hf-rrg generate: error: ...``,
with exit status 1. ``--debug`` (before or after the sub-command) shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator

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

from .metrics.errors import MetricUnavailableError

# Errors about the input, reported as one line. ValueError covers hf-rrg's own errors (ConfigError,
# ImageLoadError, TextEncodingError, ...); OSError covers missing, existing or unreadable files and a full disk;
# MetricUnavailableError a metric that cannot run here (no Java, a learned metric's package or weights missing).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError, MetricUnavailableError)
_DEBUG_HELP = "show the full traceback of an error (for bug reports)"


def _sub_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from dict.fromkeys(action.choices.values())  # aliases share a parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Record every sub-command's full name (``hf-rrg data export``) in its defaults and give every leaf command
    its own ``--debug`` (which leaves the top-level value alone when absent)."""
    children = list(_sub_parsers(parser))
    for child in children:
        child.set_defaults(command_name=child.prog)
        _name_commands(child)
    if not children and "--debug" not in parser._option_string_actions:
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-rrg", description="Radiology report generation with Hugging Face models."
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    _name_commands(parser)
    return parser


def error_line(error: BaseException) -> str:
    """The message of `error` on one line (line breaks and runs of spaces collapsed)."""
    if isinstance(error, UnicodeDecodeError):
        return (
            f"a file is not UTF-8 text ({error}); re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in > out` "
            "(run with --debug to see which)"
        )
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, except that a command whose defaults name an ``intermixed_positional`` list (e.g.
    `generate`'s images) also takes the values given after an option (``IMAGE --json IMAGE``), which argparse alone
    refuses. Unknown options are still an error."""
    args, extras = parser.parse_known_args(argv)
    target = getattr(args, "intermixed_positional", None)
    if extras and (target is None or any(extra.startswith("-") for extra in extras)):
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if extras:
        getattr(args, target).extend(extras)
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_arguments(parser, argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    name = getattr(args, "command_name", f"hf-rrg {args.command}")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"{name}: error: {error_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
