"""F1-RadGraph (Delbrouck et al., Findings of EMNLP 2022): overlap of the RadGraph entities and relations
(Jain et al., NeurIPS 2021 datasets track) extracted from a generated and a reference report.

Per report pair, RadGraph's DyGIE++ model extracts entities (anatomy / observation with presence) and relations;
the reward at level ``simple`` compares entities, ``partial`` entities with their labels and relations,
``complete`` entities with their relation sets; each is an F1, and the corpus score is the mean over reports
(an empty report scores 0). Keys: ``radgraph_f1_simple``, ``radgraph_f1_partial``, ``radgraph_f1_complete``.

Weights: ``radgraph.tar.gz`` (or ``radgraph-xl.tar.gz``) of the Hub repo ``StanfordAIMI/RRG_scorers``, as the
`radgraph` package downloads them, or a local archive / extracted folder; the archive's config names the BERT
encoder it loads from the Hub as well.

Backends: the `radgraph` package (0.1.18) calls tokenizer methods transformers 5 removed (``encode_plus``,
``build_inputs_with_special_tokens``), so with transformers 5 this wraps RadEval's patched copy of it
(`pip install radeval`); RadEval 2.2.1 imports that copy under the module name ``RadEval`` while installing it as
``radeval``, which fails on case-sensitive file systems, so the wrapper registers the alias first.
"""

from __future__ import annotations

import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import MetricPackageMissingError, MetricWeightsNotFoundError
from .result import NLGScore
from .weights import model_file, require_package

RADGRAPH_WEIGHTS = "StanfordAIMI/RRG_scorers"
RADGRAPH_ARCHIVES = {"radgraph": "radgraph.tar.gz", "radgraph-xl": "radgraph-xl.tar.gz"}
LEVELS = ("simple", "partial", "complete")


def _backend():
    """RadEval's F1RadGraph (transformers 5), else the radgraph package's (transformers 4)."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        require_package("radeval", "F1-RadGraph", "pip install radeval (the `radgraph` package 0.1.18 does not run "
                        "with transformers 5; RadEval carries a patched copy)")
        import radeval

        sys.modules.setdefault("RadEval", radeval)
        from radeval.metrics.radgraph import F1RadGraph
    else:
        require_package("radgraph", "F1-RadGraph", "pip install radgraph")
        from radgraph import F1RadGraph
    return F1RadGraph


def _model_folder(weights: str, model_type: str, cache: Path) -> Path:
    """The folder holding the extracted model (config.json, vocabulary/, weights.th) under `cache/model_type`."""
    if model_type not in RADGRAPH_ARCHIVES:
        raise ValueError(f"unknown RadGraph model {model_type!r}; choose one of {sorted(RADGRAPH_ARCHIVES)}")
    local = Path(weights).expanduser()
    if local.is_dir() and (local / "config.json").is_file():
        return local
    archive = model_file(weights, RADGRAPH_ARCHIVES[model_type], "F1-RadGraph", "the RadGraph model", "--radgraph-weights")
    target = cache / model_type
    if not (target / "config.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "r:gz") as handle:
            handle.extractall(target, filter="data")
    return target


def radgraph_f1(
    predictions: Sequence[str],
    references: Sequence[str],
    weights: str = RADGRAPH_WEIGHTS,
    model_type: str = "radgraph",
    cache: str | Path | None = None,
) -> NLGScore:
    """Mean F1-RadGraph at the three reward levels, and per-report values, against one reference each."""
    backend = _backend()
    cache = Path(cache) if cache else Path.home() / ".cache" / "hf_rrg" / "radgraph"
    folder = _model_folder(weights, model_type, cache)
    try:
        scorer = backend(reward_level="all", model_type=model_type, model_cache_dir=str(folder.parent))
    except OSError as error:  # the encoder named in the archive's config could not be loaded
        raise MetricWeightsNotFoundError(
            f"F1-RadGraph could not load the encoder named in {folder / 'config.json'} ({error}); download it where "
            "the Hub is reachable (`hf download <that id>`) and copy the cache"
        ) from None
    except ImportError as error:
        raise MetricPackageMissingError(f"F1-RadGraph's backend failed to import ({error})") from None
    _, rewards, _, _ = scorer(refs=list(references), hyps=list(predictions))
    per_item = {f"radgraph_f1_{level}": np.asarray(values, dtype=np.float64) for level, values in zip(LEVELS, rewards)}
    return NLGScore(corpus={k: float(v.mean()) for k, v in per_item.items()}, per_item=per_item)


__all__ = ["RADGRAPH_ARCHIVES", "RADGRAPH_WEIGHTS", "radgraph_f1"]
