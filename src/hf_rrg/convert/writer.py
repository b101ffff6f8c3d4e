"""`convert_checkpoint`: an official checkpoint + its annotation file -> the Hub-ready folder `hf-rrg export` writes.

Steps: read the checkpoint (tensors only) -> settings (shipped config, official-script differences, sizes read from
the tensors, `--set`) -> rebuild the official vocabulary from the annotation's train split and check its size ->
build the hf-rrg model and tokenizer -> move every tensor (strictly) -> generation settings of the official
decoding -> save and export with the provenance in the model card.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..modeling.configuration_ithn import ITHN_PRESETS
from ..modeling.configuration_xpronet import XPRONET_OBSERVATIONS
from .checkpoint import OfficialCheckpoint, file_sha256, load_official_checkpoint
from .key_maps import LABEL_PRIOR, key_map_for
from .releases import DATASETS, METHODS, OFFICIAL_DIFFERENCES, RELEASES, check_choice, shipped_config_name
from .state import Filled, official_to_ours
from .vocabulary import VocabularyMap, check_vocabulary_size, official_tokens, tokenizer_for

TRAIN_SPLIT = "train"
#: Label-head bias of a converted XProNet without a label file: sigmoid(-10) ~ 5e-5, so no slot is predicted and
#: the `no_positive_slot` fallback ("No Finding") chooses the prototypes.
NO_LABEL_LOGIT = -10.0


@dataclass
class Converted:
    """A converted model, its processor and the record that goes into the card."""

    model: Any
    processor: Any
    provenance: dict[str, Any] = field(default_factory=dict)


def read_train_reports(annotation: str | Path) -> list[str]:
    """The `train` split's reports of an R2Gen-style annotation file (what the official tokenizer counts)."""
    path = Path(annotation)
    if not path.is_file():
        raise FileNotFoundError(f"Annotation file {path} does not exist; pass the annotation.json the model was "
                                "trained with (--annotation).")  # fmt: skip
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"Annotation file {path} is not valid JSON ({error}).") from None
    split = data.get(TRAIN_SPLIT) if isinstance(data, dict) else None
    if not isinstance(split, list) or not split:
        found = sorted(map(repr, data)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"Annotation file {path} has no non-empty '{TRAIN_SPLIT}' list (found {found}); the official "
                         "vocabulary is built from the train split.")  # fmt: skip
    reports = []
    for index, entry in enumerate(split):
        report = entry.get("report") if isinstance(entry, dict) else None
        if not isinstance(report, str):
            raise ValueError(f"Annotation file {path}: train entry {index} has no 'report' string.")
        reports.append(report)
    return reports


def detect_ithn_backbone(state: dict[str, torch.Tensor]) -> str:
    """The backbone of an ITHN checkpoint, from the keys only its own layout has."""
    if "encoder_decoder.protypes" in state:
        return "xpronet"
    if any(key.startswith("encoder_decoder.model.rm.") for key in state):
        return "r2gen"
    return "r2gencmn"


def inferred_sizes(method: str, state: dict[str, torch.Tensor], num_observations: int) -> dict[str, int]:
    """Model sizes the tensors tell (d_model, d_ff, layers, memory and prototype sizes); absent tensors are skipped
    (the strict key check reports them later)."""
    sizes: dict[str, int] = {}
    logit = state.get("encoder_decoder.logit.weight")
    if logit is not None and logit.dim() == 2:
        sizes["d_model"] = int(logit.size(1))
    layers = {int(m[1]) for key in state if (m := re.match(r"encoder_decoder\.model\.encoder\.layers\.(\d+)\.", key))}
    if layers:
        sizes["num_layers"] = max(layers) + 1
    w_1 = state.get("encoder_decoder.model.encoder.layers.0.feed_forward.w_1.weight")
    if w_1 is not None:
        sizes["d_ff"] = int(w_1.size(0))
    if method == "r2gen":
        gamma = state.get("encoder_decoder.model.decoder.layers.0.sublayer.0.norm.mlp_gamma.0.weight")
        if gamma is not None and "d_model" in sizes:
            sizes["rm_num_slots"] = int(gamma.size(1)) // sizes["d_model"]
            sizes["rm_d_model"] = sizes["d_model"]
    if method == "r2gencmn" and "encoder_decoder.memory_matrix" in state:
        sizes["cmm_size"], sizes["cmm_dim"] = map(int, state["encoder_decoder.memory_matrix"].shape)
    prototypes = state.get("encoder_decoder.protypes")
    if method == "xpronet" and prototypes is not None and prototypes.size(0) % num_observations == 0:
        sizes["num_prototypes_per_class"] = int(prototypes.size(0)) // num_observations
    return sizes


def conversion_settings(
    method: str,
    dataset: str,
    state: dict[str, torch.Tensor],
    overrides: Sequence[str] = (),
    backbone_only: bool = False,
    observation_names: Sequence[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(output model type, {model, tokenizer, image_processor, generation} settings) for the conversion."""
    from ..training.config import apply_overrides, load_config

    backbone = detect_ithn_backbone(state) if method == "ithn" else None
    shipped = load_config(shipped_config_name(method, dataset, backbone))
    settings: dict[str, Any] = {
        "model": json.loads(json.dumps(shipped.model)),
        "tokenizer": {"cleaner": shipped.tokenizer.cleaner, "min_count": shipped.tokenizer.min_count},
        "image_processor": dict(shipped.image_processor),
        # max_new_tokens is left to the model: its default is max_seq_length, what the official beam search writes
        "generation": {k: v for k, v in shipped.generation.as_kwargs().items() if k != "max_new_tokens"},
    }
    nested = settings["model"]["backbone_config"] if method == "ithn" else settings["model"]
    if observation_names is not None:
        nested["observation_names"] = list(observation_names)
    num_observations = len(nested.get("observation_names") or XPRONET_OBSERVATIONS)
    nested.update(inferred_sizes(backbone or method, state, num_observations))
    if (backbone or method) == "xpronet":
        nested["share_fusion_layer"] = False  # the official model has one fusion layer per modality
    if method == "ithn":
        settings["model"].update(ITHN_PRESETS["official"])  # the official head and training objective
    for section, values in OFFICIAL_DIFFERENCES.get((method, dataset), {}).items():
        (nested if section == "model" else settings[section]).update(values)
    output_type = method
    if backbone_only:
        if method != "ithn":
            raise ValueError("--backbone-only applies to ITHN checkpoints only.")
        output_type = nested.pop("model_type", backbone)
        settings["model"] = nested
    settings = apply_overrides(settings, list(overrides))
    return output_type, settings


def label_head_prior(model: Any, label_file: str | Path | None) -> dict[str, torch.Tensor]:
    """Label-head tensors of a converted XProNet: zero weights and the train-split prior as bias (the official model
    has no label head; it read labels made from the reference report), or no label at all without a label file."""
    network = (model.backbone if model.config.model_type == "ithn" else model).prototype_network
    prefix = "backbone." if model.config.model_type == "ithn" else ""
    head = network.label_head
    bias = torch.full_like(head.bias, NO_LABEL_LOGIT)
    if label_file is not None:
        from ..xpronet.labels import read_label_file

        labels = read_label_file(label_file)
        ids = labels.splits.get(TRAIN_SPLIT) or list(labels.labels)
        config = model.config.backbone_config if model.config.model_type == "ithn" else model.config
        rows = labels.tensor(ids, config.observation_names)
        prior = rows.float().mean(dim=0).clamp(1e-4, 1 - 1e-4)
        bias = torch.log(prior / (1 - prior)).to(head.bias.dtype)
    key = f"{prefix}encoder.prototype_network.label_head"
    return {f"{key}.weight": torch.zeros_like(head.weight), f"{key}.bias": bias}


def build_model(output_type: str, model_settings: dict[str, Any], tokenizer: Any, max_views: int | None) -> Any:
    """A fresh hf-rrg model of `output_type` sized to the tokenizer (its weights are replaced next)."""
    import hf_rrg  # noqa: F401  (registers the model types)
    from transformers import AutoConfig, AutoModelForImageTextToText

    kwargs = dict(model_settings, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  unk_token_id=tokenizer.unk_token_id)  # fmt: skip
    if max_views is not None:
        kwargs["max_views"] = max_views
    try:
        config = AutoConfig.for_model(output_type, **kwargs)
    except (AttributeError, TypeError) as error:
        hint = " ITHN's backbone settings go under model.backbone_config.<name>." if output_type == "ithn" else ""
        raise ValueError(f"the model settings do not build a {output_type} model ({error}).{hint}") from None
    return AutoModelForImageTextToText.from_config(config).eval()


def official_decoding(model: Any, generation: dict[str, Any]) -> None:
    """Beam search as the official code decodes (settings from the shipped config), summed log-probabilities,
    `<pad>`/`<bos>` suppressed."""
    settings = model.generation_config
    for key, value in generation.items():
        setattr(settings, key, value)
    settings.suppress_tokens = sorted({model.config.pad_token_id, model.config.bos_token_id})


def convert(
    method: str,
    checkpoint: str | Path | OfficialCheckpoint,
    annotation: str | Path,
    *,
    dataset: str = "iu_xray",
    labels: str | Path | None = None,
    prototypes: str | Path | None = None,
    overrides: Sequence[str] = (),
    backbone_only: bool = False,
) -> Converted:
    """Convert an official checkpoint of `method` into an hf-rrg model and processor (nothing is written)."""
    from ..modeling import RRGImageProcessor, RRGProcessor

    check_choice("method", method, METHODS)
    check_choice("dataset", dataset, DATASETS)
    official = checkpoint if isinstance(checkpoint, OfficialCheckpoint) else load_official_checkpoint(checkpoint)
    state = dict(official.state_dict)
    prototype_record = _add_prototypes(state, prototypes)
    names = _label_names(labels)
    output_type, settings = conversion_settings(method, dataset, state, overrides, backbone_only, names)

    cleaner, threshold = settings["tokenizer"]["cleaner"], int(settings["tokenizer"]["min_count"])
    tokens = official_tokens(read_train_reports(annotation), cleaner, threshold)
    logits = state.get("encoder_decoder.logit.weight")
    if logits is None:
        raise ValueError(f"{official.path} has no encoder_decoder.logit.weight: it is not a checkpoint of the R2Gen "
                         "code family (R2Gen, R2GenCMN, XProNet, ITHN).")  # fmt: skip
    source = f"{Path(annotation).name} (train split, cleaner {cleaner}, threshold {threshold})"
    check_vocabulary_size(int(logits.size(0)), tokens, source)
    tokenizer = tokenizer_for(tokens, cleaner, threshold)
    image_processor = RRGImageProcessor(**settings["image_processor"])
    model = build_model(output_type, settings["model"], tokenizer, getattr(image_processor, "max_views", None))

    key_map = key_map_for(model, ithn_backbone_only=backbone_only)
    fills = label_head_prior(model, labels) if LABEL_PRIOR in key_map.filled.values() else {}
    filled = official_to_ours(model, state, key_map, VocabularyMap.build(tokens, tokenizer), fills)
    model.load_state_dict(filled.state, strict=True)
    official_decoding(model, settings["generation"])
    provenance = _provenance(method, dataset, official, annotation, tokens, settings, filled, output_type, labels,
                             prototype_record)  # fmt: skip
    return Converted(model=model.eval(), processor=RRGProcessor(image_processor, tokenizer), provenance=provenance)


def _label_names(labels: str | Path | None) -> list[str] | None:
    if labels is None:
        return None
    from ..xpronet.labels import read_label_file

    return list(read_label_file(labels).observation_names)


def _add_prototypes(state: dict[str, torch.Tensor], prototypes: str | Path | None) -> dict[str, str] | None:
    """Put a prototype matrix file into a checkpoint that lacks `encoder_decoder.protypes` (never over one)."""
    if prototypes is None:
        return None
    if "encoder_decoder.protypes" in state:
        raise ValueError("The checkpoint already holds its trained prototypes (encoder_decoder.protypes); drop "
                         "--prototypes, which only fills a checkpoint saved without them.")  # fmt: skip
    path = Path(prototypes)
    if path.suffix == ".safetensors":
        from ..xpronet.prototypes import load_prototype_file

        matrix, _ = load_prototype_file(path)
    else:
        try:
            matrix = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same answer
            raise ValueError(f"{path} cannot be read as a plain tensor file ({type(error).__name__}).") from None
        if not torch.is_tensor(matrix):
            raise ValueError(f"{path} does not hold one tensor (the official init_prototypes.pt layout).")
    state["encoder_decoder.protypes"] = matrix.reshape(-1, matrix.size(-1)).float()
    return {"file": path.name, "sha256": file_sha256(path)}


def _provenance(method: str, dataset: str, official: OfficialCheckpoint, annotation: str | Path, tokens: list[str],
                settings: dict[str, Any], filled: Filled, output_type: str, labels: Any,
                prototypes: dict[str, str] | None) -> dict[str, Any]:  # fmt: skip
    import hf_rrg

    release = RELEASES[method]
    record: dict[str, Any] = {
        "method": method,
        "converted_to": output_type,
        "dataset": dataset,
        "paper": release.paper,
        "official_code": release.repository,
        "checkpoint_file": official.path.name,
        "checkpoint_sha256": official.sha256,
        "checkpoint_layout": official.layout,
        "annotation_file": Path(annotation).name,
        "annotation_sha256": file_sha256(annotation),
        "vocabulary": f"{len(tokens) - 1} words + <unk> rebuilt from the train split (cleaner "
        f"{settings['tokenizer']['cleaner']}, threshold {settings['tokenizer']['min_count']}); official id 0 "
        "(bos/eos/pad) -> <bos>/<eos>, rows permuted into hf-rrg's layout",
        "converter": f"hf-rrg {hf_rrg.__version__} convert",
    }
    record.update({f"checkpoint_{key}": value for key, value in official.extras.items() if key == "epoch"})
    if filled.unused:
        record["official_tensors_not_used"] = filled.unused
    if any(rule == LABEL_PRIOR for rule in filled.filled.values()):
        record["label_head"] = (
            "not in the official model (it read labels made from the reference report); filled with "
            + (f"the train-split prior of {Path(labels).name}" if labels is not None else "no label (the fallback slot)")
            + ": pass observation_labels for the paper's protocol"
        )
    if any(key.endswith(".bias") and "ithn_head" in key for key in filled.filled):
        record["ithn_projection_bias"] = "zeros (the official projections have no bias)"
    if prototypes is not None:
        record["prototypes"] = prototypes
    return record


def convert_checkpoint(
    method: str,
    checkpoint: str | Path,
    annotation: str | Path,
    out_dir: str | Path,
    *,
    dataset: str = "iu_xray",
    labels: str | Path | None = None,
    prototypes: str | Path | None = None,
    overrides: Sequence[str] = (),
    backbone_only: bool = False,
    model_name: str | None = None,
    repo_id: str | None = None,
    license: str = "other",
    overwrite: bool = False,
) -> Path:
    """Convert and write `out_dir` as `hf-rrg export` does (weights, configs, tokenizer, processor, generation
    config, code, model card with the provenance); returns `out_dir`."""
    from ..hub.export import export_model

    out_dir = Path(out_dir)
    steps = _progress()
    converted = convert(method, checkpoint, annotation, dataset=dataset, labels=labels, prototypes=prototypes,
                        overrides=overrides, backbone_only=backbone_only)  # fmt: skip
    steps.update()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.convert-", dir=out_dir.parent))
    try:
        converted.model.save_pretrained(staging)
        converted.processor.save_pretrained(staging)
        steps.update()
        export_model(staging, out_dir, model_name=model_name or out_dir.resolve().name, repo_id=repo_id,
                     license=license, overwrite=overwrite, provenance=converted.provenance)  # fmt: skip
        steps.update()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        steps.close()
    return out_dir


def _progress() -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=3, desc="convert", unit="step", leave=False, file=sys.stderr)
