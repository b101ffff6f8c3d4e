"""`evaluate` module: The original CIDEr (Vedantam et al.): tf-idf cosine without clipping or length penalty, document frequencies from the evaluated references.

Load offline from the local folder: ``evaluate.load(hf_rrg.metrics.module_path("cider"))``.
"""

from hf_rrg.metrics import evaluate_module_base, cider_original


class CiderMetric(evaluate_module_base.NLGMetric):
    """The original CIDEr (Vedantam et al.): tf-idf cosine without clipping or length penalty, document frequencies from the evaluated references. Options: n."""

    score_function = cider_original
