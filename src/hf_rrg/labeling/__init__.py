"""CheXpert-style rule labeler: the 14 CheXpert observations of a report, with mention spans.

>>> from hf_rrg.labeling import CheXpertLabeler
>>> CheXpertLabeler().label("No pleural effusion. Mild cardiomegaly.").values["Cardiomegaly"]
1
"""

from .cleaning import clean_report, extract_impression, split_sentences
from .labeler import CheXpertLabeler, Mention, ReportLabels, aggregate
from .observations import NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN
from .phrases import PhraseSet

__all__ = [
    "NEGATIVE",
    "OBSERVATIONS",
    "POSITIVE",
    "UNCERTAIN",
    "CheXpertLabeler",
    "Mention",
    "PhraseSet",
    "ReportLabels",
    "aggregate",
    "clean_report",
    "extract_impression",
    "split_sentences",
]
