"""`evaluate` module: clinical efficacy (CheXpert-observation precision, recall, F1: micro, macro, example-based).

Load offline from the local folder: ``evaluate.load(hf_rrg.metrics.module_path("clinical_efficacy"))``.
Reports are labelled with `hf_rrg.labeling.CheXpertLabeler()` unless `labeler=` is given; `uncertain` maps
uncertain labels to 0 (R2Gen's compute_ce.py) or 1 (CheXbert-based scorers).
"""

import datasets
import evaluate

from hf_rrg.metrics import clinical_efficacy

_DESCRIPTION = "Clinical efficacy of generated radiology reports over the 14 CheXpert observations."
_KWARGS = """
predictions: list of generated reports (str).
references: list of reference reports (str), one per prediction.
labeler: optional object with label_matrix(reports) -> (N, 14) array of 1/0/-1/NaN.
uncertain: 0 or 1, the binary label of an uncertain mention (default 0).
"""


class ClinicalEfficacyMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, labeler=None, uncertain: int = 0):
        result = clinical_efficacy(predictions, references, labeler=labeler, uncertain=uncertain)
        scores = result.as_dict()
        scores["per_class"] = result.per_class
        return scores
