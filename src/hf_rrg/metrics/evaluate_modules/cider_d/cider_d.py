"""`evaluate` module: CIDEr-D as pycocoevalcap 1.2's Cider: clipped tf-idf, Gaussian length penalty (sigma 6), x10, document frequencies from the evaluated references.

Load offline from the local folder: ``evaluate.load(hf_rrg.metrics.module_path("cider_d"))``.
"""

from hf_rrg.metrics import evaluate_module_base, cider_d


class CiderDMetric(evaluate_module_base.NLGMetric):
    """CIDEr-D as pycocoevalcap 1.2's Cider: clipped tf-idf, Gaussian length penalty (sigma 6), x10, document frequencies from the evaluated references. Options: n, sigma."""

    score_function = cider_d
