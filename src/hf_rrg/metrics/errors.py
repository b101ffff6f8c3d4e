"""Error types of `hf_rrg.metrics`: each says what is wrong and what to do, in one line.

- `EvaluationInputError` (a `ValueError`): a predictions file or argument is unusable (ids that differ between
  files, duplicate ids, a reference with no words, bytes that are not UTF-8).
- `MetricUnavailableError` (a `RuntimeError`): a metric cannot run in this environment (no Java for METEOR,
  a learned metric's package missing or not working with the installed transformers). `hf-rrg evaluate`
  computes every other metric and reports this one as skipped with the message.
- `MetricPackageMissingError` (a `ModuleNotFoundError` and a `MetricUnavailableError`): the package a metric
  needs is missing; the message names the pip command.
- `MetricWeightsNotFoundError` (a `FileNotFoundError` and a `MetricUnavailableError`): a learned metric's
  weights are neither in the local Hugging Face cache nor at the given path, and the Hub cannot be reached.
"""

from __future__ import annotations


class EvaluationInputError(ValueError):
    """Predictions, references or ids that cannot be scored as given."""


class MetricUnavailableError(RuntimeError):
    """A metric that cannot run here (missing Java, package or weights); the message says how to provide it."""


class MetricFileMissingError(MetricUnavailableError, FileNotFoundError):
    """A file a metric needs (a jar, a table) is missing from its installed package."""


class MetricWeightsNotFoundError(MetricFileMissingError):
    """A learned metric's weights could not be found locally nor downloaded."""


class MetricPackageMissingError(MetricUnavailableError, ModuleNotFoundError):
    """A package a metric needs is not installed (or does not work with the installed transformers)."""


__all__ = [
    "EvaluationInputError",
    "MetricFileMissingError",
    "MetricPackageMissingError",
    "MetricUnavailableError",
    "MetricWeightsNotFoundError",
]
