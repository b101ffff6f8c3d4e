"""``python -m hf_rrg``: the `hf-rrg` command line (the same as the `hf-rrg` console script)."""

import sys

from .cli import main

sys.exit(main())
