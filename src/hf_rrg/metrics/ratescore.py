"""RaTEScore (Zhao et al., EMNLP 2024): an entity-aware score of a generated against a reference report.

A DeBERTa entity recogniser (``Angelakeke/RaTE-NER-Deberta``) finds medical entities with their types and
negation; a synonym encoder (``FremyCompany/BioLORD-2023-C``) embeds them; precision and recall match entities
by cosine similarity weighted by a learned type-affinity matrix, and the item score is their F1 (0.5 when
either report has no entity). The corpus score is the mean. Key: ``ratescore``.

This wraps the authors' package (`pip install ratescore`, module `RaTEScore`, which needs medspacy), giving it
local folders for both models: Hub ids are resolved in the local cache first, so the error without them names
the missing model and the option to pass a local copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .result import NLGScore
from .weights import default_device, model_folder, require_package

RATESCORE_NER = "Angelakeke/RaTE-NER-Deberta"
RATESCORE_ENCODER = "FremyCompany/BioLORD-2023-C"


def ratescore(
    predictions: Sequence[str],
    references: Sequence[str],
    ner_model: str = RATESCORE_NER,
    encoder_model: str = RATESCORE_ENCODER,
    device: str | None = None,
    batch_size: int = 16,
) -> NLGScore:
    """Mean RaTEScore and per-report values against one reference each."""
    require_package("RaTEScore", "RaTEScore", "pip install ratescore (it also installs medspacy)")
    ner = model_folder(ner_model, "RaTEScore", "the entity recogniser", "--ratescore-ner")
    encoder = model_folder(encoder_model, "RaTEScore", "the synonym encoder", "--ratescore-encoder")
    from RaTEScore import RaTEScore

    scorer = RaTEScore(bert_model=str(ner), eval_model=str(encoder), batch_size=batch_size,
                       use_gpu=default_device(device).startswith("cuda"))
    scores = np.asarray(scorer.compute_score(list(predictions), list(references)), dtype=np.float64)
    return NLGScore(corpus={"ratescore": float(scores.mean())}, per_item={"ratescore": scores})


__all__ = ["RATESCORE_ENCODER", "RATESCORE_NER", "ratescore"]
