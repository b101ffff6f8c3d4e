"""The 14 CheXpert observations, label values and the phrase-file name of each observation."""

from __future__ import annotations

from typing import Final

NO_FINDING: Final = "No Finding"
ENLARGED_CARDIOMEDIASTINUM: Final = "Enlarged Cardiomediastinum"
CARDIOMEGALY: Final = "Cardiomegaly"
SUPPORT_DEVICES: Final = "Support Devices"

#: The 14 observations in CheXpert's column order (the order of `labeled_reports.csv`).
OBSERVATIONS: Final[tuple[str, ...]] = (
    NO_FINDING,
    ENLARGED_CARDIOMEDIASTINUM,
    CARDIOMEGALY,
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    SUPPORT_DEVICES,
)

#: Label values: positive, negative, uncertain (an unmentioned observation is ``None``).
POSITIVE: Final = 1
NEGATIVE: Final = 0
UNCERTAIN: Final = -1


def phrase_file_stem(observation: str) -> str:
    """The phrase-file name (without `.txt`) for an observation: ``"Lung Opacity"`` -> ``"lung_opacity"``."""
    return observation.lower().replace(" ", "_")
