"""Locating the Java tools shipped in the pycocoevalcap wheel (METEOR 1.5, Stanford PTB tokenizer) and Java."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from .errors import MetricFileMissingError, MetricPackageMissingError, MetricUnavailableError

_INSTALL_HINT = "install it with `pip install pycocoevalcap` (the wheel ships the jar)"


def pycocoevalcap_file(*parts: str) -> Path:
    """A file inside the installed pycocoevalcap package; a clear error when the package or file is missing."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise MetricPackageMissingError(f"pycocoevalcap is not installed, and {'/'.join(parts)} comes from it: {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*parts)
        if candidate.is_file():
            return candidate
    raise MetricFileMissingError(
        f"{'/'.join(parts)} is missing from the installed pycocoevalcap "
        f"({list(spec.submodule_search_locations)}); reinstall it: `pip install --force-reinstall pycocoevalcap`"
    )


def meteor_jar() -> Path:
    """Path of ``meteor-1.5.jar`` (its ``data/paraphrase-en.gz`` must sit beside it)."""
    jar = pycocoevalcap_file("meteor", "meteor-1.5.jar")
    if not (jar.parent / "data" / "paraphrase-en.gz").is_file():
        raise MetricFileMissingError(f"METEOR's paraphrase table {jar.parent / 'data' / 'paraphrase-en.gz'} is missing; {_INSTALL_HINT}")
    return jar


def ptb_tokenizer_jar() -> Path:
    """Path of the Stanford CoreNLP 3.4.1 jar that pycocoevalcap's `PTBTokenizer` runs."""
    return pycocoevalcap_file("tokenizer", "stanford-corenlp-3.4.1.jar")


def java_executable(java: str | None = None) -> str:
    """The Java executable to run (`java` if given, else the one on PATH); a clear error when there is none."""
    found = shutil.which(java or "java")
    if found is None:
        raise MetricUnavailableError(
            f"Java was not found ({java or 'java'!r} is not on PATH). METEOR and the PTB tokenizer run Java jars: "
            "install a Java runtime (8 or newer, e.g. `apt-get install default-jre-headless`) or pass its path."
        )
    return found
