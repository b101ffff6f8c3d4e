"""`evaluate` module: ROUGE-L as pycocoevalcap 1.2: mean per-item F (beta 1.2), max precision and max recall over references.

Load offline from the local folder: ``evaluate.load(hf_rrg.metrics.module_path("rouge_l"))``.
"""

from hf_rrg.metrics import evaluate_module_base, rouge_l


class RougeLMetric(evaluate_module_base.NLGMetric):
    """ROUGE-L as pycocoevalcap 1.2: mean per-item F (beta 1.2), max precision and max recall over references. Options: beta."""

    score_function = rouge_l
