"""`evaluate` module: METEOR 1.5 through the official jar shipped with pycocoevalcap (needs Java), as pycocoevalcap's Meteor.

Load offline from the local folder: ``evaluate.load(hf_rrg.metrics.module_path("meteor"))``.
"""

from hf_rrg.metrics import evaluate_module_base, meteor


class MeteorMetric(evaluate_module_base.NLGMetric):
    """METEOR 1.5 through the official jar shipped with pycocoevalcap (needs Java), as pycocoevalcap's Meteor. Options: java, memory, timeout."""

    score_function = meteor
