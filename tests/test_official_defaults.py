"""Defaults that equal the official code where the papers are silent: the report length of `generate()`, the
xavier initialisation of the R2Gen family under transformers 5, XProNet's two fusion layers, the training config's
`generation` section and the backbone weights the IU X-Ray / MIMIC-CXR configs name."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from transformers import AutoModelForImageTextToText

import hf_rrg  # noqa: F401  (registers the Auto classes)
from hf_rrg import (
    CoAttConfig,
    CoAttForConditionalGeneration,
    R2GenCMNConfig,
    R2GenCMNForConditionalGeneration,
    R2GenConfig,
    R2GenForConditionalGeneration,
    XProNetConfig,
    XProNetForConditionalGeneration,
)
from hf_rrg.modeling.configuration_asgk import ASGKConfig
from hf_rrg.modeling.configuration_dcrrg import DCRRGConfig
from hf_rrg.modeling.modeling_asgk import ASGKForConditionalGeneration
from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration
from hf_rrg.training.config import ConfigError, GenerationConfig, load_config

MAX_LEN = 9
COMMON = dict(vocab_size=40, visual_backbone="test_resnet", visual_pretrained=False, d_model=32, d_ff=64,
              num_heads=4, num_layers=2, max_seq_length=MAX_LEN)  # fmt: skip
BUILDERS = {
    "r2gen": lambda: R2GenForConditionalGeneration(R2GenConfig(rm_d_model=32, rm_num_heads=4, **COMMON)),
    "r2gencmn": lambda: R2GenCMNForConditionalGeneration(R2GenCMNConfig(cmm_size=64, cmm_dim=32, topk=8, **COMMON)),
    "xpronet": lambda: XProNetForConditionalGeneration(XProNetConfig(
        num_prototypes_per_class=2, prototype_visual_dim=8, prototype_text_dim=8, prototype_top_k=3, **COMMON)),
    "asgk": lambda: ASGKForConditionalGeneration(ASGKConfig(
        region_size=48, graph_num_heads=4, textbook_max_length=20, max_position_embeddings=32, **COMMON)),
    "dcrrg": lambda: DCRRGForConditionalGeneration(DCRRGConfig(projection_dim=16, text_encoder_config=dict(
        hidden_size=32, num_attention_heads=4, num_hidden_layers=1, intermediate_size=64,
        max_position_embeddings=64), **{k: v for k, v in COMMON.items() if k != "num_layers"})),
}  # fmt: skip


def build(kind: str):
    torch.manual_seed(0)
    return BUILDERS[kind]().eval()


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_default_generate_writes_up_to_max_seq_length_new_tokens(kind: str) -> None:
    """The official beam search writes up to max_seq_length tokens after <bos>; transformers' max_length would
    count <bos> too. With <eos> suppressed every beam runs to the cap."""
    model = build(kind)
    torch.manual_seed(1)
    inputs = dict(pixel_values=torch.randn(2, 2 if kind != "dcrrg" else 1, 3, 64, 64),
                  suppress_tokens=[model.config.eos_token_id])  # fmt: skip
    assert model.generation_config.max_new_tokens == MAX_LEN and model.generation_config.max_length is None
    default = model.generate(**inputs)
    assert default.shape[1] == 1 + MAX_LEN  # <bos> + max_seq_length new tokens
    assert torch.equal(default, model.generate(**inputs, max_new_tokens=MAX_LEN))


def test_coatt_counts_new_tokens_after_bos_too() -> None:
    torch.manual_seed(0)
    model = CoAttForConditionalGeneration(CoAttConfig(
        visual_backbone="test_resnet", visual_pretrained=False, vocab_size=30, num_tags=12, num_semantic_tags=4,
        hidden_size=32, embedding_size=16, mlc_hidden_size=32, sentence_end_token_id=4, max_views=2,
        max_sentences=3, max_words_per_sentence=5)).eval()  # fmt: skip
    assert model.generation_config.max_new_tokens == 3 * 5 + 1  # every word of every sentence, then <eos>
    pixels = torch.randn(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    capped = model.generate(pixel_values=pixels, max_new_tokens=4, stop_threshold=1.0)
    assert capped.shape[1] == 1 + 4 and (capped[:, -1] == model.config.eos_token_id).all()
    assert torch.equal(capped, model.generate(pixel_values=pixels, max_length=5, stop_threshold=1.0))


def xavier_matrices(model) -> dict[str, torch.Tensor]:
    """The matrices the official code initialises with xavier-uniform: its whole Transformer (embeddings, relational
    memory and conditional norms included), R2GenCMN's memory attention, XProNet's querying and word fusion."""
    parts = {"encoder.transformer": model.encoder.transformer, "decoder": model.decoder}
    if getattr(model.encoder, "memory", None) is not None:
        parts["encoder.memory.attention"] = model.encoder.memory.attention
    network = getattr(model.encoder, "prototype_network", None)
    if network is not None:
        parts.update({"querying": network.querying, "text_fusion": network.text_fusion})
    return {f"{name}.{key}": p for name, part in parts.items() for key, p in part.named_parameters() if p.dim() > 1}


@pytest.mark.parametrize("kind", ["r2gen", "r2gencmn", "xpronet"])
@pytest.mark.parametrize("route", ["init", "from_config"])
def test_r2gen_family_starts_from_xavier_uniform_matrices(kind: str, route: str) -> None:
    model = build(kind)
    if route == "from_config":
        torch.manual_seed(2)
        model = AutoModelForImageTextToText.from_config(model.config)
    matrices = xavier_matrices(model)
    assert "decoder.embed_tokens.lut.weight" in matrices and len(matrices) > 20
    for name, weight in matrices.items():
        fan_out, fan_in = weight.shape
        xavier_bound = math.sqrt(6.0 / (fan_in + fan_out))
        largest = weight.abs().max().item()
        assert largest <= xavier_bound * (1 + 1e-6), name
        # PyTorch's defaults stay within 1/sqrt(fan_in) (Linear) or are N(0, 1) (Embedding): xavier's wider range
        assert largest > 1.0 / math.sqrt(fan_in) or "embed_tokens" in name, name
        assert weight.std().item() == pytest.approx(xavier_bound / math.sqrt(3.0), rel=0.15), name
    if kind == "r2gen":  # the conditional layer norms' MLP biases start at 0.1, as the official code
        norm = model.decoder.layers[0].norms[0]
        assert (norm.mlp_gamma[0].bias == 0.1).all() and (norm.mlp_beta[2].bias == 0.1).all()


def test_xpronet_has_one_fusion_layer_per_modality_by_default() -> None:
    model = build("xpronet")
    network = model.encoder.prototype_network
    assert model.config.share_fusion_layer is False and network.text_fusion is not None
    features, labels = torch.randn(1, 3, 32), torch.eye(14)[[13]]
    with torch.no_grad():
        before = network.interact(features, labels, "text")[0]
        network.visual_fusion.weight.add_(1.0)  # the word path does not read the visual FCN
        assert torch.equal(network.interact(features, labels, "text")[0], before)
    shared = XProNetForConditionalGeneration(XProNetConfig(
        num_prototypes_per_class=2, prototype_visual_dim=8, prototype_text_dim=8, prototype_top_k=3,
        share_fusion_layer=True, **COMMON))  # fmt: skip
    assert shared.encoder.prototype_network.text_fusion is None  # Eq. 14's single FCN stays an option


def test_training_generation_section_counts_new_tokens() -> None:
    assert GenerationConfig(num_beams=3, max_new_tokens=60).as_kwargs() == {"num_beams": 3, "max_new_tokens": 60}
    old = GenerationConfig(max_length=60)  # transformers' sense: <bos> counts
    assert (old.max_new_tokens, old.max_length, old.as_kwargs()) == (59, None, {"max_new_tokens": 59})
    with pytest.raises(ConfigError, match=r"max_length \(60\) and generation\.max_new_tokens \(60\) are both set"):
        GenerationConfig(max_length=60, max_new_tokens=60)
    for name, length in (("r2gen_iu_xray", 60), ("r2gencmn_mimic_cxr", 100), ("xpronet_iu_xray", 60)):
        config = load_config(name)
        assert config.generation.as_kwargs() == {"num_beams": 3, "max_new_tokens": length}, name
        assert config.model["max_seq_length"] == length, name


def test_iu_and_mimic_configs_name_torchvision_weights_of_the_same_architecture() -> None:
    config = load_config("r2gencmn_iu_xray")
    assert config.model["visual_backbone"] == "resnet101.tv_in1k"
    tv = timm.create_model("resnet101.tv_in1k", pretrained=False, num_classes=0, global_pool="")
    default = timm.create_model("resnet101", pretrained=False, num_classes=0, global_pool="")
    assert tv.pretrained_cfg["tag"] == "tv_in1k" and default.pretrained_cfg["tag"] != "tv_in1k"
    assert {k: v.shape for k, v in tv.state_dict().items()} == {k: v.shape for k, v in default.state_dict().items()}
