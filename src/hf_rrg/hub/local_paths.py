"""Keep the training machine's local paths out of exported files (training config, metrics, model card).

An absolute path (``/home/alice/data/iu_xray``, ``~/models/bert``, ``C:\\Users\\alice\\x``), alone or inside a
longer text such as an error message, is replaced by ``<local path>``. Relative paths, Hub ids (``org/name``) and
URLs are kept.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .run_folder import RunInfo

LOCAL_PATH = "<local path>"

_STOP = r"\s'\"`,;()\[\]{}<>|"  # characters that end a path inside text
_ABSOLUTE_PATH = re.compile(
    rf"(?<![\w/.:~\\-])(?:"
    rf"~[/\\][^{_STOP}]*"  # ~/x
    rf"|[A-Za-z]:(?:\\\\|\\|/)[^{_STOP}]*"  # C:\x, C:/x, C:\\x (JSON-escaped)
    rf"|\\\\[^{_STOP}\\]+\\[^{_STOP}]*"  # \\server\share
    rf"|/[^{_STOP}/]+(?:/[^{_STOP}]*)?"  # /x or /x/y...
    rf")"
)


def scrub_text(text: str) -> str:
    """`text` with every absolute local path replaced by ``<local path>``."""
    return _ABSOLUTE_PATH.sub(LOCAL_PATH, text)


def scrub_data(value: Any) -> Any:
    """A copy of JSON/YAML data (dicts, lists, scalars) with absolute local paths in its strings replaced."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {key: scrub_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(item) for item in value]
    return value


def scrub_run(run: RunInfo) -> RunInfo:
    """`run` with its metrics, training config and training config text free of local paths."""
    return dataclasses.replace(
        run,
        metrics=scrub_data(run.metrics),
        training_config=None if run.training_config is None else scrub_data(run.training_config),
        training_config_text=None if run.training_config_text is None else scrub_text(run.training_config_text),
    )


__all__ = ["LOCAL_PATH", "scrub_data", "scrub_run", "scrub_text"]
