"""The `accelerate launch` entry point: runs exactly what `hf-rrg train` runs.

    accelerate launch training_scripts/train.py --config training_scripts/configs/r2gencmn_iu_xray.yaml \
        --output-dir runs/r2gencmn_iu --set data.data_dir=/data/iu_xray
"""

from __future__ import annotations

import argparse
import sys

from hf_rrg.training.commands import add_train_arguments, train_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train an hf-rrg report generator (same options as `hf-rrg train`).")
    add_train_arguments(parser, config_flag=True)
    return train_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
