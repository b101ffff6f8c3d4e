"""`hf-rrg train CONFIG [--output-dir RUN_DIR] [--set key=value ...] [--resume]`.

`accelerate launch training_scripts/train.py --config CONFIG ...` parses the same arguments and calls the same
`train_from_args`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..resources import shipped_training_configs


def add_train_arguments(parser: argparse.ArgumentParser, config_flag: bool = False) -> None:
    """The arguments of `hf-rrg train` (`--config CONFIG` instead of a positional for `train.py`)."""
    help_config = "YAML training config: a path, or the name of a shipped one (e.g. r2gencmn_demo)"
    if config_flag:
        parser.add_argument("--config", required=True, help=help_config)
    else:
        parser.add_argument("config", help=help_config)
    parser.add_argument(
        "--output-dir", default=None,
        help="run folder for checkpoints, logs, metrics, predictions and model/ (default runs/<config>-<time>)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=5 --set optimizer.lr_rest=1e-3 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint")
    parser.add_argument(
        "--resume-with-changes", action="store_true",
        help="with --resume: accept config changes that alter the training (seed, batch size, learning rate, ...) "
        "and record them in RUN_DIR/resume_changes.jsonl (refused otherwise)",
    )
    parser.add_argument(
        "--resume-inexact", action="store_true",
        help="with --resume: continue even if a checkpoint's random states cannot be restored (the resumed run "
        "then does not repeat the interrupted one; stopped otherwise)",
    )
    parser.add_argument(
        "--stage", dest="stages", action="append", default=None, metavar="NAME",
        help="run only this recipe stage, again if it already finished (repeatable; e.g. XProNet's labels, "
        "prototypes, train). Default: every stage (finished ones are skipped with --resume)",
    )


def shipped_configs_help() -> str:
    """The line of `--help` that lists the shipped training configs."""
    return (
        "shipped configs (give the name as CONFIG; the *_demo ones train offline on the CPU with the embedded demo "
        "set, the others have the papers' settings): " + ", ".join(shipped_training_configs())
    )


def train_from_args(args: argparse.Namespace) -> int:
    from ..data.commands import builder_errors_for_the_command_line
    from .config import load_config, resolve_config_path
    from .recipes import run_training

    config = load_config(args.config, args.overrides)
    with_changes, inexact = getattr(args, "resume_with_changes", False), getattr(args, "resume_inexact", False)
    if (with_changes or inexact) and not args.resume:
        raise ValueError("--resume-with-changes and --resume-inexact only apply together with --resume")
    if args.output_dir is None:
        if args.resume:
            raise ValueError("--resume needs --output-dir: the run folder to continue")
        stem = resolve_config_path(args.config).stem
        output_dir = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    else:
        output_dir = Path(args.output_dir)
    with builder_errors_for_the_command_line(config.data.builder, prefix="data.builder_kwargs."):
        run_training(config, output_dir, resume=args.resume, stages=getattr(args, "stages", None),
                     resume_with_changes=with_changes, resume_inexact=inexact)  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML config (Accelerate; resumable)",
        description="Train a report generator. Under `accelerate launch` use training_scripts/train.py instead.",
        epilog=shipped_configs_help(),
    )
    add_train_arguments(parser)
    parser.set_defaults(func=train_from_args)


__all__ = ["add_train_arguments", "register", "shipped_configs_help", "train_from_args"]
