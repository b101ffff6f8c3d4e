"""Base classes of hf-rrg's `evaluate` modules (`evaluate_modules/<name>/<name>.py`).

Each module script subclasses one of these and names its score function; `evaluate.load(module_path(name))`
then works offline. Scripts import this *module* (not the classes), because `evaluate` takes the first
`EvaluationModule` subclass it finds in a script's namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import evaluate

_INPUTS = """
predictions: list of generated reports (str).
references: one reference report (str) or a list of reference reports per prediction.
Returns the corpus score(s) and, with `per_item=True`, the per-item scores under `<name>_per_item`.
"""


class NLGMetric(evaluate.Metric):
    """An NLG metric over predictions and one or several references per prediction."""

    score_function: Callable[..., Any]

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=(type(self).__doc__ or "").strip(),
            citation="",
            inputs_description=_INPUTS,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, per_item: bool = False, **options) -> dict[str, Any]:
        result = type(self).score_function(predictions, references, **options)
        scores = dict(result.corpus)
        if per_item:
            scores.update({f"{key}_per_item": values.tolist() for key, values in result.per_item.items()})
        return scores
