"""`explain_report` for every method: the report equals the pipeline's, and each method's explanation holds what
the model computed (XProNet's labels, CoAtt's attention per sentence, ASGK's heat map, region and tags, DCRRG's
observation probabilities), checked against the model's own outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_hub_fixtures import misc_images, real_reports

from hf_rrg import RRGImageProcessor, RRGProcessor, RRGTokenizer
from hf_rrg.modeling.pipeline_rrg import PIPELINE_TASK, RadiologyReportGenerationPipeline
from hf_rrg.modeling.report_explanation import explain_report

SMALL = dict(visual_backbone="test_resnet", visual_pretrained=False)


@pytest.fixture(scope="module")
def processor(shared_data: Path) -> RRGProcessor:
    tokenizer = RRGTokenizer.from_reports(real_reports(shared_data), cleaner="r2gen_iu_xray", min_count=2)
    image_processor = RRGImageProcessor(eval_size=64, resize_shorter=72, crop_size={"height": 64, "width": 64},
                                        max_views=2)  # fmt: skip
    return RRGProcessor(image_processor, tokenizer)


@pytest.fixture(scope="module")
def study(shared_data: Path) -> list[str]:
    png, _, _, dicom, _ = misc_images(shared_data)
    return [str(png), str(dicom)]


def tiny(method: str, vocab: int, period: int):
    """A tiny randomly initialised model of `method` (its `<eos>` made unlikely, so reports have a few sentences)."""
    from hf_rrg import (
        ASGKConfig,
        ASGKForConditionalGeneration,
        CoAttConfig,
        CoAttForConditionalGeneration,
        DCRRGConfig,
        DCRRGForConditionalGeneration,
        ITHNConfig,
        ITHNForConditionalGeneration,
        XProNetConfig,
        XProNetForConditionalGeneration,
    )

    torch.manual_seed(0)
    xpronet = dict(vocab_size=vocab, d_model=32, d_ff=64, num_heads=4, num_layers=1, max_seq_length=16,
                   prototype_visual_dim=96, prototype_text_dim=16, num_prototypes_per_class=4, prototype_top_k=3,
                   prototype_num_heads=4, **SMALL)  # fmt: skip
    if method == "xpronet":
        return XProNetForConditionalGeneration(XProNetConfig(**xpronet))
    if method == "ithn":
        backbone = {"model_type": "xpronet", **xpronet}
        return ITHNForConditionalGeneration(ITHNConfig(backbone_config=backbone, vocab_size=vocab, embed_dim=16))
    if method == "coatt":
        return CoAttForConditionalGeneration(CoAttConfig(vocab_size=vocab, num_tags=12, num_semantic_tags=4,
            hidden_size=32, embedding_size=16, mlc_hidden_size=32, sentence_end_token_id=period, max_views=2,
            max_sentences=3, max_words_per_sentence=5, stop_threshold=0.999999, **SMALL))  # fmt: skip
    if method == "asgk":
        return ASGKForConditionalGeneration(ASGKConfig(vocab_size=vocab, visual_backbone="test_resnet", region_size=48,
            d_model=32, d_ff=64, num_heads=4, graph_num_heads=4, num_layers=1, max_seq_length=12,
            textbook_max_length=20, max_position_embeddings=32))  # fmt: skip
    if method == "dcrrg":
        return DCRRGForConditionalGeneration(DCRRGConfig(vocab_size=vocab, projection_dim=16, d_model=32, d_ff=64,
            num_heads=4, max_seq_length=10, text_encoder_config=dict(hidden_size=32, num_attention_heads=4,
            num_hidden_layers=1, intermediate_size=64, max_position_embeddings=64), **SMALL))  # fmt: skip
    raise ValueError(method)


@pytest.mark.parametrize("method", ["xpronet", "ithn", "coatt", "asgk", "dcrrg"])
def test_every_method_is_explained_with_the_pipeline_report(method, processor, study):
    tokenizer = processor.tokenizer
    model = tiny(method, len(tokenizer), tokenizer.convert_tokens_to_ids(".")).eval()
    explanation = explain_report(model, processor, study, {"num_beams": 1})
    pipe = RadiologyReportGenerationPipeline(model=model, processor=processor, task=PIPELINE_TASK, device="cpu")
    assert explanation.report == pipe(tuple(study), num_beams=1)[0]["generated_text"]
    assert explanation.method == method and len(explanation.views) == 2 and explanation.kind
    inputs = processor(images=[study])
    with torch.no_grad():
        if method in ("xpronet", "ithn"):
            backbone = getattr(model, "backbone", model)
            encoded = backbone.get_encoder()(inputs["pixel_values"], inputs["view_mask"])
            probabilities = torch.sigmoid(encoded.observation_logits[0])
            chosen = {backbone.config.observation_names[i] for i in encoded.observation_labels[0].nonzero().flatten()}
            assert {name for name, _ in explanation.findings} == chosen and chosen
            for name, value in explanation.findings:
                assert value == pytest.approx(float(probabilities[backbone.config.observation_names.index(name)]))
            assert "cross-attention" in explanation.kind and explanation.sentences
            for item in explanation.sentences:  # views' shares of each sentence's attention sum to 1
                assert sum(item.view_share) == pytest.approx(1.0, abs=1e-5) and item.maps[0].shape == (2, 2)
        elif method == "coatt":
            ids = model.generate(**inputs, num_beams=1)
            alpha = model(**inputs, labels=ids).visual_attention[0]  # (sentences, 2 views * 4 regions)
            assert len(explanation.sentences) == alpha.size(0) >= 1  # sentences as the forward splits the report
            for item, row in zip(explanation.sentences, alpha):
                torch.testing.assert_close(torch.tensor(item.maps[0]).flatten(), row[:4])
                assert sum(item.view_share) == pytest.approx(1.0, abs=1e-5)
                assert item.sentence.endswith(".") or item.sentence == explanation.sentences[-1].sentence
        elif method == "asgk":
            encoded = model.predict_tags(inputs["pixel_values"], inputs["view_mask"])
            torch.testing.assert_close(torch.tensor(explanation.sentences[0].maps[1]), encoded.heat_maps[0, 1])
            top, bottom, left, right = encoded.region_boxes[0, 0].tolist()
            assert explanation.regions[0].size == (right - left, bottom - top)
            values = encoded.node_values[0]
            best = values.argsort(descending=True)[:5]
            assert [name for name, _ in explanation.findings] == [model.config.tag_names[i] for i in best]
            assert [value for _, value in explanation.findings] == pytest.approx([float(values[i]) for i in best])
        else:
            expected = model.observation_probabilities(inputs["pixel_values"], inputs["view_mask"])[0]
            assert len(explanation.findings) == len(model.config.observation_names) == expected.numel()
            for name, value in explanation.findings:
                assert value == pytest.approx(float(expected[model.config.observation_names.index(name)]))
            assert [v for _, v in explanation.findings] == sorted((v for _, v in explanation.findings), reverse=True)
            assert explanation.overlays() == []
