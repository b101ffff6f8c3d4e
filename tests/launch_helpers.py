"""Helpers for tests that launch several CPU processes (gloo): a free port and the environment they run in."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A TCP port nothing listens on (for the processes' rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_env() -> dict[str, str]:
    """This environment with no visible GPU and one thread per process."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
