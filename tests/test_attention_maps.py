"""Cross-attention outputs of the R2Gen family: `generate(output_attentions=True, return_dict_in_generate=True)`
returns real attentions, they land on the right view and the right patches, and the heat-map helpers and
`hf-rrg generate --heatmap` draw them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_hub_fixtures import build_model_and_processor, real_reports

from hf_rrg.modeling.report_explanation import (
    average_cross_attention,
    explain_report,
    generated_token_attention,
    heat_overlay,
    patch_grid,
    sentence_spans,
)

SIZE = 128  # test_resnet has stride 32: a 4 x 4 patch grid per view
CALIBRATION_IMAGE = "tb0005.png"
CONTENT_IMAGE = "00000001_000.png"


@pytest.fixture(scope="module")
def reports(shared_data: Path) -> list[str]:
    return real_reports(shared_data)


def pixels(processor, image: Image.Image) -> torch.Tensor:
    """(3, SIZE, SIZE) model input of a PIL image (built directly: the loader refuses a blank image)."""
    ip = processor.image_processor
    array = ip.eval_transform(image.convert("RGB"), (SIZE, SIZE), ip.resample)
    return torch.from_numpy(ip.to_normalized_chw(array, True, ip.rescale_factor, True, ip.image_mean, ip.image_std))


def blank() -> Image.Image:
    return Image.new("RGB", (SIZE, SIZE))


def pasted(image: Image.Image, corner: str) -> Image.Image:
    """A black view with `image` shrunk into one quadrant (`corner`: "top-left" or "top-right")."""
    canvas = blank()
    left = 0 if corner == "top-left" else SIZE // 2
    canvas.paste(image.convert("RGB").resize((SIZE // 2, SIZE // 2)), (left, 0))
    return canvas


def attractive_content_model(method: str, reports: list[str], processor_images: tuple[Image.Image, Image.Image]):
    """A tiny model whose cross-attention scores are large where the encoder sees image content.

    Construction: the encoder layers' residual branches are zeroed, so each encoder token depends on its own patch
    only; every cross-attention gets a constant query u (q_proj weight 0, bias u) and keys k_j = u (v . e_j) with
    v = mean(encoder tokens of a calibration X-ray) - mean(encoder tokens of a blank view). The score of token j is
    then proportional to v . e_j: content patches attract attention, blank ones do not. The calibration X-ray is
    not the image tested. R2Gen, because its encoder adds no positions: in R2GenCMN the sinusoidal positions of the
    concatenated views (0..15 for view 1, 16..31 for view 2) outweigh a tiny random CNN's content signal. The
    attention read-out tested here (decoder layers, `MultiHeadAttention`, view/patch layout) is the one the whole
    family shares; the other members are tested for equality with the teacher-forced pass below.
    """
    model, processor = build_model_and_processor(method, reports, seed=3)
    model.config.max_views = 2
    for layer in model.encoder.transformer.layers:
        for linear in (layer.self_attn.out_proj, layer.feed_forward.w_2):
            torch.nn.init.zeros_(linear.weight)
            torch.nn.init.zeros_(linear.bias)
    calibration = torch.stack([pixels(processor, image) for image in processor_images]).unsqueeze(0)
    with torch.no_grad():
        states = model.encoder(calibration).last_hidden_state[0]  # (2 * 16, d)
    half = states.size(0) // 2
    direction = states[:half].mean(0) - states[half:].mean(0)
    u = torch.ones(model.config.d_model)
    scale = 40.0 / direction.norm()
    with torch.no_grad():
        for layer in model.decoder.layers:
            attention = layer.cross_attn
            attention.q_proj.weight.zero_()
            attention.q_proj.bias.copy_(u)
            attention.k_proj.weight.copy_(scale * torch.outer(u, direction) / u.norm())
            attention.k_proj.bias.zero_()
    return model.eval(), processor


def view_masses(cross_attentions, views: int = 2) -> torch.Tensor:
    """Generate's per-step cross-attentions -> (views, rows, cols) attention averaged over steps, heads, layers."""
    per_step = torch.stack([average_cross_attention(step)[0, -1] for step in cross_attentions])  # (steps, keys)
    mean = per_step.mean(0).view(views, -1)
    return mean.view(views, *patch_grid(mean.size(-1), SIZE, SIZE))


def test_attention_lands_on_the_content_view_and_its_patches(reports, shared_data):
    """One blank view and one view holding an X-ray in one quadrant: generate's cross-attention puts more than 80%
    of its mass on the content view, and more than 80% of that view's mass in the quadrant, whichever view slot and
    quadrant the content occupies.

    A random or uniform map fails: it gives each view about 50% and each quadrant about 25%. So does a mapping bug:
    views swapped (the mass would sit on the blank view) or rows and columns transposed (the top-right content
    would show up bottom-left)."""
    calibration = Image.open(shared_data / "misc_cxr_images" / CALIBRATION_IMAGE)
    content = Image.open(shared_data / "misc_cxr_images" / CONTENT_IMAGE)
    model, processor = attractive_content_model("r2gen", reports, (calibration, blank()))
    for slot in (0, 1):
        for corner in ("top-left", "top-right"):
            views = [blank(), blank()]
            views[slot] = pasted(content, corner)
            pixel_values = torch.stack([pixels(processor, view) for view in views]).unsqueeze(0)
            with torch.no_grad():
                out = model.generate(pixel_values=pixel_values, num_beams=1, max_new_tokens=6,
                                     output_attentions=True, return_dict_in_generate=True)  # fmt: skip
            assert out.cross_attentions and all(layer is not None for step in out.cross_attentions for layer in step)
            maps = view_masses(out.cross_attentions)
            total = maps.sum((1, 2))
            assert torch.isclose(total.sum(), torch.tensor(1.0), atol=1e-5)
            assert total[slot] > 0.8, (slot, corner, total)
            quadrant = maps[slot, :2, :2] if corner == "top-left" else maps[slot, :2, 2:]
            assert quadrant.sum() / total[slot] > 0.8, (slot, corner, maps[slot])


def test_generate_attentions_equal_the_teacher_forced_pass_and_pad_views_get_none(reports, shared_data):
    """Greedy generation, step by step, attends exactly as the one teacher-forced pass the explanations use; a
    padded (missing) view receives no attention."""
    model, processor = build_model_and_processor("r2gencmn", reports, seed=4)
    image = shared_data / "misc_cxr_images" / CONTENT_IMAGE
    inputs = processor(images=[[str(image)]])  # max_views 2: the second view is padding
    with torch.no_grad():
        out = model.generate(**inputs, num_beams=1, output_attentions=True, return_dict_in_generate=True)
    teacher = generated_token_attention(model, inputs["pixel_values"], inputs["view_mask"], out.sequences)
    steps = torch.stack([average_cross_attention(step)[0, -1] for step in out.cross_attentions])
    torch.testing.assert_close(teacher[0, : steps.size(0)].flatten(1), steps, rtol=1e-5, atol=1e-6)
    assert teacher[0, :, 1].abs().max() == 0  # the padded view
    assert torch.allclose(teacher[0, :, 0].sum(-1), torch.ones(teacher.size(1)))
    beam = model.generate(**inputs, num_beams=3, output_attentions=True, return_dict_in_generate=True)
    assert beam.cross_attentions[0][0].shape[:2] == (3, model.config.num_heads)  # one row per beam


def test_explanation_maps_per_sentence_and_view(reports, shared_data, tmp_path):
    model, processor = build_model_and_processor("r2gen", reports, seed=5)
    images = [shared_data / "misc_cxr_images" / name for name in (CONTENT_IMAGE, "pydicom-data_RG1_UNCR_chest_CR.dcm")]
    explanation = explain_report(model, processor, [str(path) for path in images], {"num_beams": 1})
    expected = processor.batch_decode(model.generate(**processor(images=[[str(p) for p in images]]), num_beams=1),
                                      skip_special_tokens=True)[0]  # fmt: skip
    assert explanation.report == expected
    assert len(explanation.views) == 2 and explanation.views[0].size == (64, 64)
    assert explanation.sentences
    for item in explanation.sentences:
        assert item.sentence in explanation.report
        assert len(item.maps) == 2 and item.maps[0].shape == (2, 2)
        assert abs(sum(item.view_share) - 1) < 1e-5
        assert abs(sum(float(m.sum()) for m in item.maps) - 1) < 1e-5
    pictures = explanation.overlays()
    assert len(pictures) == 2 * len(explanation.sentences)
    assert pictures[0][0].size == (64, 64) and "view 1" in pictures[0][1]


def test_sentence_spans_split_at_periods_and_stop_at_eos(reports):
    _, processor = build_model_and_processor("r2gen", reports)
    tokenizer = processor.tokenizer
    ids = tokenizer("the heart is normal . no effusion .")["input_ids"] + [tokenizer.pad_token_id] * 2
    spans = sentence_spans(ids, tokenizer)
    assert [text for text, _, _ in spans] == ["the heart is normal .", "no effusion ."]
    assert spans[0][1] == 1 and ids[spans[0][2] - 1] == tokenizer.convert_tokens_to_ids(".")
    unfinished = [tokenizer.bos_token_id, *tokenizer.convert_tokens_to_ids(["no", "effusion"])]  # cut at max length
    assert [text for text, _, _ in sentence_spans(unfinished, tokenizer)] == ["no effusion"]


def test_patch_grid_and_overlay():
    assert patch_grid(16, 128, 128) == (4, 4)
    assert patch_grid(12, 96, 128) == (3, 4)
    assert patch_grid(12, 128, 96) == (4, 3)
    heat = np.full((2, 2), 0.25, dtype=np.float32)
    heat[0, 1] = 1.0
    grey = Image.new("RGB", (64, 64), (100, 100, 100))
    overlay = np.asarray(heat_overlay(grey, heat, alpha=1.0))
    assert overlay[2, 61].tolist() == [255, 255, 0]  # the hot top-right cell is yellow
    assert overlay[61, 2].tolist() == [100, 100, 100]  # a cold cell leaves the image as it is
    half = np.asarray(heat_overlay(grey, heat, alpha=0.5, low=0.0, high=2.0))  # a shared scale: 1.0 is half-hot
    assert half[2, 61].tolist() == [round(100 * 0.75 + 255 * 0.25), 75, 75]  # red (255, 0, 0) at opacity 0.25
