"""What the benchmark scripts share: the machine line printed under every table, device synchronisation and the
Markdown table of result rows (run the scripts from the repository root: `python benchmarks/bench_x.py`)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

import torch


def machine(device: torch.device) -> str:
    """The device (GPU name, or CPU with its torch threads and cores), torch's version and the load average."""
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}{load}"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} torch threads on {os.cpu_count()} cores, torch {torch.__version__}{load}"


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (timings of asynchronous kernels); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """The rows as a Markdown table (columns of the first row; floats with two decimals)."""
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = (row.get(key) for key in header)
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in cells) + " |")
