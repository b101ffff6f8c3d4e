"""Read a user's text file (config, report table, label file) as UTF-8, with an error that names the file and byte.

Python's own `UnicodeDecodeError` names neither the file nor the line; `read_text` does, and says how to convert.
"""

from __future__ import annotations

from pathlib import Path


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
