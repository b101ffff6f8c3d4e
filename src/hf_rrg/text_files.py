"""Read a user's text file (config, report table, label file) as UTF-8, with an error that names the file and byte.

Python's own `UnicodeDecodeError` names neither the file nor the line; `read_text` does, and says how to convert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class TextEncodingError(ValueError):
    """A text file is not valid UTF-8; the message names the file, the byte, its line and column."""


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of `path` decoded as `encoding` (``utf-8`` or ``utf-8-sig``); `TextEncodingError` when it is not."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise TextEncodingError(encoding_message(path, data, error)) from None


def jsonl_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a UTF-8 JSON Lines file; a line that is not JSON is a
    `ValueError` naming the file and the line."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not valid JSON ({error.msg})") from None
        yield number, value


def encoding_message(path: Path, data: bytes, error: UnicodeDecodeError) -> str:
    """`<path> is not UTF-8 text: byte 0xe9 at line 6, column 12 ...; re-save it as UTF-8 ...`."""
    before = data[: error.start]
    line = before.count(b"\n") + 1
    column = error.start - (before.rfind(b"\n") + 1) + 1
    guess = ""
    try:
        data.decode("cp1252")
        guess = " It reads as Windows-1252 / Latin-1"
        source = "latin1"
    except UnicodeDecodeError:
        source = "<its encoding>"
    return (
        f"{path} is not UTF-8 text: byte 0x{data[error.start]:02x} at line {line}, column {column} cannot be decoded "
        f"({error.reason}).{guess} Re-save it as UTF-8, e.g. `iconv -f {source} -t utf-8 {path.name} > "
        f"{path.stem}.utf8{path.suffix}`."
    )


__all__ = ["TextEncodingError", "encoding_message", "read_text"]
