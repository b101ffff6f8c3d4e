"""pycocoevalcap's PTB tokenization (Stanford CoreNLP 3.4.1 `PTBTokenizer`, lower-cased, punctuation dropped).

Same command and punctuation list as pycocoevalcap's `PTBTokenizer`, but the temporary input file goes to a
private temporary directory (pycocoevalcap writes it inside its own, possibly read-only, package folder) and
a failure or timeout raises an error.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from .java_tools import java_executable, ptb_tokenizer_jar

# Tokens pycocoevalcap removes after tokenizing (note: "-lrb-" etc. survive, because -lowerCase runs first).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)


def ptb_tokenize(texts: list[str], java: str | None = None, timeout: float = 600.0) -> list[str]:
    """PTB-tokenize each text as pycocoevalcap does; returns space-separated tokens, one string per text."""
    if not texts:
        return []
    command = [java_executable(java), "-cp", str(ptb_tokenizer_jar()), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase"]
    with tempfile.TemporaryDirectory(prefix="hf_rrg_ptb_") as folder:
        source = Path(folder) / "sentences.txt"
        source.write_bytes("\n".join(text.replace("\r", " ").replace("\n", " ") for text in texts).encode())
        try:
            done = subprocess.run(command + [str(source)], capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the PTB tokenizer ran longer than {timeout:g} s and was stopped: {' '.join(command)}") from None
    if done.returncode != 0:
        raise RuntimeError(
            f"the PTB tokenizer failed (exit code {done.returncode}): {' '.join(command)}\n"
            + done.stderr.decode(errors="replace")[-2000:]
        )
    lines = done.stdout.decode().split("\n")
    lines += [""] * (len(texts) - len(lines))
    return [" ".join(word for word in line.rstrip().split(" ") if word not in PUNCTUATIONS) for line in lines[: len(texts)]]
