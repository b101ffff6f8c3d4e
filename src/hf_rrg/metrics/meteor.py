"""METEOR 1.5 through the official jar shipped with pycocoevalcap, giving pycocoevalcap's numbers.

pycocoevalcap's `Meteor` starts ``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm``, sends one
``SCORE ||| ref_1 ||| ... ||| ref_k ||| hypothesis`` line per item (reading back a line of sufficient
statistics each time), then one ``EVAL ||| stats_1 ||| ... ||| stats_N`` line, and reads back N item scores
followed by the corpus score (the jar aggregates the statistics, so the corpus score is *not* the mean of the
item scores). This wrapper sends the same lines to the same command, with one JVM per call, but:
- a writer thread feeds stdin while the caller reads stdout, and stderr goes to a temporary file, so no pipe
  can fill up and deadlock;
- a missing Java, a JVM that exits, or a run past `timeout` raises an error naming the cause (never hangs);
- newlines inside a text (which would desynchronise the line protocol) and ``|||`` (the field separator)
  become spaces, and runs of two spaces in the hypothesis are reduced as pycocoevalcap does.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import IO

import numpy as np

from .inputs import as_reference_lists
from .java_tools import java_executable, meteor_jar
from .result import NLGScore


def _field(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ").replace("|||", "")


def score_line(prediction: str, references: Sequence[str]) -> str:
    """The jar's ``SCORE`` request for one item (hypothesis cleaned as pycocoevalcap cleans it)."""
    hypothesis = _field(prediction).replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(_field(ref) for ref in references), hypothesis))


def _write_lines(stream: IO[bytes], lines: list[str], errors: list[BaseException]) -> None:
    try:
        for line in lines:
            stream.write(f"{line}\n".encode())
        stream.flush()
    except (BrokenPipeError, OSError) as error:  # the JVM died; the reader reports it
        errors.append(error)


class _MeteorProcess:
    """One METEOR JVM in stdio mode, with a kill timer."""

    def __init__(self, java: str | None, memory: str, timeout: float) -> None:
        jar = meteor_jar()
        self.command = [java_executable(java), "-jar", f"-Xmx{memory}", str(jar), "-", "-", "-stdio", "-l", "en", "-norm"]
        self.stderr = tempfile.TemporaryFile()
        self.timed_out = threading.Event()
        self.process = subprocess.Popen(
            self.command, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr
        )
        self.timeout = timeout
        self.timer = threading.Timer(timeout, self._kill_on_timeout)
        self.timer.daemon = True
        self.timer.start()

    def _kill_on_timeout(self) -> None:
        self.timed_out.set()
        self.process.kill()

    def failure(self, what: str) -> RuntimeError:
        self.process.kill()
        self.process.wait()
        self.stderr.seek(0)
        log = self.stderr.read().decode(errors="replace").strip()[-2000:]
        if self.timed_out.is_set():
            reason = f"it ran longer than timeout={self.timeout:g} s and was stopped (raise `timeout` for large sets)"
        else:
            reason = f"the JVM exited with code {self.process.returncode}"
        return RuntimeError(
            f"METEOR failed while {what}: {reason}. Command: {' '.join(self.command)}"
            + (f"\nJava said:\n{log}" if log else "")
        )

    def read_line(self, what: str) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise self.failure(what)
        return line.decode().strip()

    def close(self) -> None:
        self.timer.cancel()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.stderr.close()


def _run_lines(jvm: _MeteorProcess, lines: list[str], replies: list[int], what: str) -> list[list[str]]:
    """Send `lines` to the jar (a writer thread) and read `replies[i]` lines back for each; closes stdin."""
    errors: list[BaseException] = []

    def write() -> None:
        _write_lines(jvm.process.stdin, lines, errors)
        try:
            jvm.process.stdin.close()
        except OSError:
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    answers = [[jvm.read_line(f"{what} {index}") for _ in range(count)] for index, count in enumerate(replies)]
    writer.join()
    if errors:
        raise jvm.failure(what)
    return answers


def _evaluate(jvm: _MeteorProcess, statistics: list[str], rows: Sequence[np.ndarray]) -> list[list[float]]:
    lines = ["EVAL ||| " + " ||| ".join(statistics[i] for i in row) for row in rows]
    answers = _run_lines(jvm, lines, [len(row) + 1 for row in rows], "evaluating set")
    try:
        return [[float(value) for value in answer] for answer in answers]
    except ValueError as error:
        raise RuntimeError(f"METEOR returned a line that is not a score: {error}") from None


# METEOR 1.5's English parameters (Denkowski & Lavie, 2014): alpha, beta, gamma, delta, and the weights of the
# exact, stem, synonym and paraphrase matching stages. The jar runs with them (``-l en``, default task).
METEOR_PARAMETERS = (0.85, 0.20, 0.60, 0.75)
METEOR_STAGE_WEIGHTS = (1.0, 0.60, 0.80, 0.60)


def parse_statistics(lines: Sequence[str]) -> np.ndarray:
    """The jar's statistics lines as an ``(N, 23)`` array: hypothesis and reference length, their function-word
    counts, per stage (exact, stem, synonym, paraphrase) the matched content and function words of hypothesis
    and reference, the number of chunks, and the matched words of hypothesis and reference. A perfect match
    (every word matched in one chunk) gets 0 chunks, as the jar does before it sums statistics."""
    statistics = np.array([[float(value) for value in line.split()] for line in lines], dtype=np.float64)
    if statistics.ndim != 2 or statistics.shape[1] != 23:
        raise ValueError(f"METEOR statistics lines must hold 23 numbers; got shape {statistics.shape}")
    perfect = (statistics[:, 21] == statistics[:, 0]) & (statistics[:, 22] == statistics[:, 1]) & (statistics[:, 20] == 1)
    statistics[perfect, 20] = 0
    return statistics


def meteor_from_statistics(statistics: np.ndarray) -> np.ndarray:
    """METEOR of each row of summed statistics ``(B, 23)`` (`parse_statistics`), as the jar scores them.

    P = sum_i w_i (delta m_i(h_content) + (1 - delta) m_i(h_function)) / (delta |h_content| + (1 - delta)
    |h_function|), R likewise over the reference, Fmean = P R / (alpha P + (1 - alpha) R), penalty = gamma
    (chunks / mean matched words)^beta, METEOR = (1 - penalty) Fmean; 0 without matches.
    """
    alpha, beta, gamma, delta = METEOR_PARAMETERS
    s = np.atleast_2d(statistics)
    weights = np.asarray(METEOR_STAGE_WEIGHTS)
    stages = s[:, 4:20].reshape(len(s), 4, 4)  # per stage: hyp content, ref content, hyp function, ref function

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    precision = ratio((weights * (delta * stages[..., 0] + (1 - delta) * stages[..., 2])).sum(-1),
                      delta * (s[:, 0] - s[:, 2]) + (1 - delta) * s[:, 2])
    recall = ratio((weights * (delta * stages[..., 1] + (1 - delta) * stages[..., 3])).sum(-1),
                   delta * (s[:, 1] - s[:, 3]) + (1 - delta) * s[:, 3])
    fmean = ratio(precision * recall, alpha * precision + (1 - alpha) * recall)
    matched = (s[:, 21] + s[:, 22]) / 2
    perfect = (s[:, 21] == s[:, 0]) & (s[:, 22] == s[:, 1]) & (s[:, 20] == 1)
    fragmentation = np.where(perfect, 0.0, ratio(s[:, 20], matched))
    return (1 - gamma * fragmentation**beta) * fmean


def meteor(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    java: str | None = None,
    memory: str = "2G",
    timeout: float = 600.0,
    statistics: list[str] | None = None,
) -> NLGScore:
    """Corpus METEOR 1.5 (key ``meteor``) and per-item scores, as pycocoevalcap's `Meteor().compute_score`.

    Needs pycocoevalcap (for the jar) and Java. `java` is the executable (default: ``java`` on PATH), `memory`
    the JVM heap (``-Xmx``), `timeout` the seconds after which the JVM is stopped and an error raised. Pass a
    list as `statistics` to receive the per-item statistics lines (for `parse_statistics`).
    """
    predictions, reference_lists = as_reference_lists(predictions, references)
    if not predictions:
        raise ValueError("METEOR needs at least one prediction")
    lines = [score_line(prediction, refs) for prediction, refs in zip(predictions, reference_lists)]
    jvm = _MeteorProcess(java, memory, timeout)
    try:
        errors: list[BaseException] = []
        writer = threading.Thread(target=_write_lines, args=(jvm.process.stdin, lines, errors), daemon=True)
        writer.start()
        item_statistics = [jvm.read_line(f"scoring item {index}") for index in range(len(lines))]
        writer.join()
        if errors:
            raise jvm.failure("receiving the items")
        values = _evaluate(jvm, item_statistics, [np.arange(len(lines))])[0]
    finally:
        jvm.close()
    if statistics is not None:
        statistics.extend(item_statistics)
    return NLGScore(corpus={"meteor": values[-1]}, per_item={"meteor": np.array(values[:-1])})
