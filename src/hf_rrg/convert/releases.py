"""What the authors published and with which settings their code ran: the facts a converter cannot read from the
tensors (beam size, report length, vocabulary threshold, views per study).

Settings start from hf-rrg's shipped training config of the method and dataset (which follows the official
scripts); `OFFICIAL_DIFFERENCES` holds where an official script differs from it; `--set` overrides come last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATASETS = ("iu_xray", "mimic_cxr")
METHODS = ("r2gen", "r2gencmn", "xpronet", "ithn")


@dataclass(frozen=True)
class Release:
    """A method's official code and paper (for the card's provenance and docs/reproduce.md)."""

    repository: str
    paper: str
    checkpoints: str


RELEASES: dict[str, Release] = {
    "r2gen": Release(
        "https://github.com/zhjohnchan/R2Gen",
        "Chen, Song, Chang, Wan. Generating Radiology Reports via Memory-driven Transformer. EMNLP 2020.",
        "data/r2gen.md of the repository (Google Drive / Baidu links): model_iu_xray.pth, model_mimic_cxr.pth",
    ),
    "r2gencmn": Release(
        "https://github.com/zhjohnchan/R2GenCMN",
        "Chen, Shen, Song, Wan. Cross-modal Memory Networks for Radiology Report Generation. ACL-IJCNLP 2021.",
        "data/r2gencmn.md of the repository (Google Drive / Baidu links): model_iu_xray.pth, model_mimic_cxr.pth",
    ),
    "xpronet": Release(
        "https://github.com/Markin-Wang/XProNet",
        "Wang, Bhalerao, He. Cross-modal Prototype Driven Network for Radiology Report Generation. ECCV 2022.",
        "the Google Drive folder linked under 'Download Trained Models' in the repository's README",
    ),
    "ithn": Release(
        "https://github.com/Bhanu068/ITHN",
        "Voutharoja, Wang, Zhou. Automatic Radiology Report Generation by Learning with Increasingly Hard "
        "Negatives. ECAI 2023.",
        "the Google Drive folder linked under 'Download ITHN Model' in the repository's README",
    ),
}

#: (method, dataset) -> settings of the official scripts that differ from hf-rrg's shipped config, as
#: {section: {key: value}} (sections model / tokenizer / image_processor / generation). For ITHN, `model` keys
#: apply to the backbone.
OFFICIAL_DIFFERENCES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    # ITHN's IU X-Ray samples are single images (its dataset reads one image per annotation entry).
    ("ithn", "iu_xray"): {"image_processor": {"max_views": 1}},
    # ITHN's run_mimic_cxr.sh trains with --max_seq_length 60 (R2GenCMN and XProNet use 100).
    ("ithn", "mimic_cxr"): {"model": {"max_seq_length": 60}},
}


def shipped_config_name(method: str, dataset: str, backbone: str | None = None) -> str:
    """The shipped training config the conversion starts from (`r2gen_iu_xray`, `ithn_xpronet_mimic_cxr`, ...)."""
    if method == "ithn":
        return f"ithn_{backbone or 'r2gencmn'}_{dataset}"
    return f"{method}_{dataset}"


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not supported; choose one of {', '.join(choices)}.")
