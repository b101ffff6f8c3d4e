"""The `accelerate launch` / `torchrun` entry point: runs exactly what `hf-rrg train` runs.

    accelerate launch training_scripts/train.py --config training_scripts/configs/r2gencmn_iu_xray.yaml \
        --output-dir runs/r2gencmn_iu --set data.data_dir=/data/iu_xray

A config, data or resume problem ends with one line naming it (on every process) and exit code 1; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from hf_rrg.training.commands import add_train_arguments, shipped_configs_help, train_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train an hf-rrg report generator (same options as `hf-rrg train`).",
        epilog=shipped_configs_help(),
    )
    add_train_arguments(parser, config_flag=True)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(argv)
    try:
        return train_from_args(args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        if args.debug:
            raise
        print(f"train.py: error: {error}", file=sys.stderr)
        return 1
    finally:
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
