"""`evaluate` module: BLEU-1..4 as pycocoevalcap 1.2 computes it (closest reference length, its smoothing constants).

Load offline from the local folder: ``evaluate.load(hf_rrg.metrics.module_path("bleu"))``.
"""

from hf_rrg.metrics import evaluate_module_base, bleu


class BleuMetric(evaluate_module_base.NLGMetric):
    """BLEU-1..4 as pycocoevalcap 1.2 computes it (closest reference length, its smoothing constants). Options: max_n."""

    score_function = bleu
