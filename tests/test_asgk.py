"""ASGK's parts against the paper: focal loss (Eq. 10-11) by hand, the heat-map region (Eq. 9, threshold, largest
connected component, box -> pixels -> crop) on hand-made maps, the tag graph (Eq. 1-2: node values, normalised
edges), the tied GPT-style decoder (Eq. 6-8), the loss terms, generation with/without cache, textbook mode,
save/load, config checks, and the GloVe objective by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageTextToText

import hf_rrg  # noqa: F401
from hf_rrg.asgk.glove import cooccurrences, glove_loss, read_glove_text, train_glove, write_glove_text
from hf_rrg.asgk.tags import labeler_tag_row, match_tags, mesh_head_terms, read_tag_file
from hf_rrg.asgk.textbook import split_textbook_sentences
from hf_rrg.modeling.asgk_losses import focal_loss, tag_bce
from hf_rrg.modeling.asgk_visual import (
    box_to_pixels,
    component_box,
    crop_regions,
    heat_map,
    largest_component,
    largest_pixel_components,
    official_heat_map,
    official_region_boxes,
    pre_activation_module,
    region_boxes,
)
from hf_rrg.modeling.configuration_asgk import ASGK_LABELER_TAGS, OFFICIAL_HEATMAP_THRESHOLD, ASGKConfig
from hf_rrg.modeling.modeling_asgk import ASGKForConditionalGeneration

TINY = dict(
    vocab_size=40, visual_backbone="test_resnet", region_size=48, d_model=32, d_ff=64, num_heads=4, graph_num_heads=4,
    num_layers=2, max_seq_length=12, textbook_max_length=20, max_position_embeddings=32,
)  # fmt: skip


def tiny_model(**overrides) -> ASGKForConditionalGeneration:
    torch.manual_seed(0)
    return ASGKForConditionalGeneration(ASGKConfig(**{**TINY, **overrides})).eval()


@pytest.fixture(scope="module")
def pixels() -> dict:
    torch.manual_seed(1)
    return {"pixel_values": torch.randn(2, 1, 3, 96, 96)}


# ------------------------------------------------------------------------------------------- Eq. 10-11


def hand_focal(logits: list[float], labels: list[int], alpha: float, gamma: float) -> float:
    total = 0.0
    for z, y in zip(logits, labels):
        p = 1.0 / (1.0 + math.exp(-z))
        p_star = p if y == 1 else 1.0 - p  # Eq. 10
        total += -alpha * (1.0 - p_star) ** gamma * math.log(p_star)  # Eq. 11
    return total


def test_focal_loss_equals_eq_10_11_by_hand() -> None:
    logits = [2.0, -1.0, 0.3, -3.0, 0.0, 4.5]
    labels = [1, 1, 0, 0, 1, 0]
    for alpha, gamma in ((0.25, 2.0), (0.5, 0.0), (0.7, 1.5)):
        expected = hand_focal(logits, labels, alpha, gamma)
        got = focal_loss(torch.tensor(logits), torch.tensor(labels), alpha=alpha, gamma=gamma, reduction="sum")
        assert got.item() == pytest.approx(expected, rel=1e-5)
        mean = focal_loss(torch.tensor(logits), torch.tensor(labels), alpha=alpha, gamma=gamma)
        assert mean.item() == pytest.approx(expected / len(logits), rel=1e-5)
    # γ = 2 down-weights the easy examples: an easy positive (p = 0.99) costs far less than under BCE
    easy = focal_loss(torch.tensor([4.6]), torch.tensor([1]), alpha=1.0, gamma=2.0)
    assert easy.item() < 1e-3 * F.binary_cross_entropy_with_logits(torch.tensor([4.6]), torch.tensor([1.0])).item()


def test_focal_loss_at_gamma_0_alpha_half_is_half_the_bce() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 7) * 3, torch.randint(0, 2, (5, 7))
    bce = F.binary_cross_entropy_with_logits(logits, labels.float())
    torch.testing.assert_close(focal_loss(logits, labels, alpha=0.5, gamma=0.0), bce / 2)
    torch.testing.assert_close(focal_loss(logits, labels, alpha=1.0, gamma=0.0), bce)
    big = focal_loss(torch.tensor([200.0, -200.0]), torch.tensor([0, 1]), alpha=0.25, gamma=2.0, reduction="none")
    torch.testing.assert_close(big, torch.tensor([50.0, 50.0]))  # log p* from log-sigmoid: no overflow
    with pytest.raises(ValueError, match="same shape"):
        focal_loss(logits, labels[:, :3])
    probabilities = torch.sigmoid(logits)
    torch.testing.assert_close(tag_bce(probabilities, labels), bce, rtol=1e-4, atol=1e-5)  # Eq. 4


# ------------------------------------------------------------------------------------------- Eq. 9, region


def test_heat_map_is_eq_9_normalised_or_the_official_channel_sum() -> None:
    features = torch.zeros(1, 3, 2, 2)
    features[0, 0] = torch.tensor([[1.0, -5.0], [2.0, 0.0]])
    features[0, 1] = torch.tensor([[3.0, 1.0], [-1.0, 0.0]])
    # max_k |f^k| = [[3, 5], [2, 0]] -> / 5
    torch.testing.assert_close(heat_map(features, "max_abs")[0], torch.tensor([[0.6, 1.0], [0.4, 0.0]]))
    # channel sums [[4, -4], [1, 0]] -> (x + 4) / 8
    torch.testing.assert_close(heat_map(features, "official")[0], torch.tensor([[1.0, 0.0], [0.625, 0.5]]))
    assert torch.equal(heat_map(torch.ones(1, 2, 3, 3))[0], torch.ones(3, 3))  # constant: whole image
    assert ASGKConfig(**TINY).effective_heatmap_threshold == 0.7
    assert ASGKConfig(**TINY, heatmap_mode="official").effective_heatmap_threshold == OFFICIAL_HEATMAP_THRESHOLD


def test_the_region_is_the_largest_connected_component_above_tau() -> None:
    heat = torch.tensor(
        [
            [0.9, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.75, 0.72, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.71, 0.8, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.95, 0.0],  # touches the block diagonally only
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [1.0, 0.69, 0.0, 0.0, 0.0, 0.0, 0.0],  # 0.69 < τ
        ]
    )
    four = largest_component(heat >= 0.7, heat, connectivity=4)
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[2:4, 3:5] = True  # the 2 x 2 block (4 cells) beats the 3-cell corner
    assert torch.equal(four, expected)
    eight = largest_component(heat >= 0.7, heat, connectivity=8)
    expected[4, 5] = True  # 8-connected: the diagonal neighbour joins
    assert torch.equal(eight, expected)
    assert component_box(eight) == (2, 5, 3, 6)
    tie = torch.tensor([[0.8, 0.0, 0.9]])
    assert torch.equal(largest_component(tie >= 0.7, tie), torch.tensor([[False, False, True]]))  # hotter wins


def test_the_crop_box_maps_grid_cells_to_the_right_pixels() -> None:
    assert box_to_pixels((2, 5, 3, 6), (7, 7), (224, 224)) == (64, 160, 96, 192)  # 32 px per cell
    assert box_to_pixels((0, 1, 1, 2), (3, 3), (10, 10)) == (0, 4, 3, 7)  # whole cells: floor / ceil
    heat = torch.zeros(1, 7, 7)
    heat[0, 2:4, 3:5] = 1.0
    boxes, masks = region_boxes(heat, 0.7, (224, 224))
    assert boxes.tolist() == [[64, 128, 96, 160]] and int(masks.sum()) == 4
    image = torch.arange(3 * 224 * 224, dtype=torch.float32).view(1, 3, 224, 224)
    crop = crop_regions(image, boxes, 64)  # 64 x 64 region -> 64 x 64: exactly the pixels of the box
    assert torch.equal(crop[0], image[0, :, 64:128, 96:160])
    resized = crop_regions(image, torch.tensor([[0, 112, 0, 112]]), 224)
    assert resized.shape == (1, 3, 224, 224)


def test_the_model_crops_the_region_of_its_own_heat_map(pixels) -> None:
    model = tiny_model()
    out = model.predict_tags(**pixels)
    maps = model.visual_extractor.feature_maps(pixels["pixel_values"][:, 0])
    torch.testing.assert_close(out.heat_maps[:, 0], heat_map(maps, "max_abs"))
    for b in range(2):
        mask = largest_component(out.heat_maps[b, 0] >= 0.7, out.heat_maps[b, 0])
        assert torch.equal(out.region_masks[b, 0], mask)
        assert tuple(out.region_boxes[b, 0].tolist()) == box_to_pixels(component_box(mask), mask.shape, (96, 96))


# ---------------------------------------------------------------------------------- the official heat map


def opencv_bilinear(grid: list[list[float]], height: int, width: int) -> list[list[float]]:
    """Bilinear resize with half-pixel centres and replicated borders (OpenCV's INTER_LINEAR), written out."""
    h, w = len(grid), len(grid[0])

    def source(index: int, scale: float, size: int) -> tuple[int, int, float]:
        position = max((index + 0.5) * scale - 0.5, 0.0)
        low = min(int(position), size - 1)
        return low, min(low + 1, size - 1), position - low

    out = []
    for y in range(height):
        y0, y1, fy = source(y, h / height, h)
        row = []
        for x in range(width):
            x0, x1, fx = source(x, w / width, w)
            top = (1 - fx) * grid[y0][x0] + fx * grid[y0][x1]
            bottom = (1 - fx) * grid[y1][x0] + fx * grid[y1][x1]
            row.append((1 - fy) * top + fy * bottom)
        out.append(row)
    return out


def bfs_components(mask: list[list[bool]], connectivity: int) -> list[set[tuple[int, int]]]:
    """Connected components in raster order of their first pixel (as skimage.measure.label numbers them)."""
    h, w, seen, found = len(mask), len(mask[0]), set(), []
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)] + ([(-1, -1), (-1, 1), (1, -1), (1, 1)] if connectivity == 8 else [])
    for r in range(h):
        for c in range(w):
            if mask[r][c] and (r, c) not in seen:
                component, queue = set(), [(r, c)]
                seen.add((r, c))
                while queue:
                    y, x = queue.pop()
                    component.add((y, x))
                    for dy, dx in steps:
                        if 0 <= y + dy < h and 0 <= x + dx < w and mask[y + dy][x + dx] and (y + dy, x + dx) not in seen:
                            seen.add((y + dy, x + dx))
                            queue.append((y + dy, x + dx))
                found.append(component)
    return found


def test_official_crop_on_a_hand_made_feature_map() -> None:
    """Channel sum of the pre-ReLU maps, 0-255, upsampled to the image, pixels > 178, largest component, its box.
    Block A is the hottest after a ReLU (5 in channel 0) but channel 1 cancels it before (-4.5): the official crop
    is block B, where a post-ReLU heat map would choose A."""
    maps = torch.zeros(1, 2, 7, 7)
    maps[0, 0, 0:3, 0:4] = 5.0  # A: 12 cells
    maps[0, 1, 0:3, 0:4] = -4.5
    maps[0, 0, 4:7, 4:7] = 3.0  # B: 9 cells
    maps[0, 0, 0, 6] = 3.0  # C: one hot cell, a smaller component
    heat = official_heat_map(maps, (28, 28))
    cam = [[sum(maps[0, k, r, c].item() for k in range(2)) for c in range(7)] for r in range(7)]  # A 0.5, B 3, C 3
    scaled = [[math.floor(255 * v / 3.0) for v in row] for row in cam]  # min 0, max 3
    assert scaled[0][0] == 42 and scaled[5][5] == 255
    expected_levels = [[round(v) for v in row] for row in opencv_bilinear(scaled, 28, 28)]
    assert torch.round(heat[0] * 255).long().tolist() == expected_levels
    components = bfs_components([[v > 178 for v in row] for row in expected_levels], 8)
    biggest = max(components, key=len)
    rows, cols = [y for y, _ in biggest], [x for _, x in biggest]
    expected_box = [min(rows), max(rows) + 1, min(cols), max(cols) + 1]
    boxes, masks = official_region_boxes(heat, 178 / 255)
    assert boxes[0].tolist() == expected_box and expected_box[0] >= 16 and expected_box[2] >= 16  # inside B
    assert {(y, x) for y, x in masks[0].nonzero().tolist()} == biggest
    post_relu = official_heat_map(maps.clamp_min(0), (28, 28))  # what a heat map of timm's outputs would see
    assert official_region_boxes(post_relu, 178 / 255)[0][0].tolist()[0] == 0  # block A, top-left


def test_pixel_components_match_a_breadth_first_search() -> None:
    torch.manual_seed(3)
    masks = torch.rand(4, 17, 23) > 0.55
    masks[3] = False
    for connectivity in (4, 8):
        got = largest_pixel_components(masks, connectivity)
        for index in range(3):
            components = bfs_components(masks[index].tolist(), connectivity)
            size = max(len(c) for c in components)
            first = next(c for c in components if len(c) == size)  # ties: the first in raster order
            assert {(y, x) for y, x in got[index].nonzero().tolist()} == first
        assert not got[3].any()


def test_the_official_mode_reads_the_maps_before_the_final_relu(pixels) -> None:
    import copy

    model = tiny_model(heatmap_mode="official")
    extractor = model.visual_extractor
    out = model.predict_tags(**pixels)
    assert out.heat_maps.shape == (2, 1, 96, 96) and out.region_masks.shape == (2, 1, 96, 96)
    plain = copy.deepcopy(extractor.global_backbone)  # the same backbone with its last activation removed
    last = pre_activation_module(plain)
    name = next(n for n, m in plain.named_modules() if m is last)
    parent = plain.get_submodule(name.rsplit(".", 1)[0]) if "." in name else plain
    setattr(parent, name.rsplit(".", 1)[-1], torch.nn.Identity())
    with torch.no_grad():
        pre = plain.forward_features(pixels["pixel_values"][:, 0])
    assert (pre < 0).any()  # really before the ReLU
    heat = official_heat_map(pre, (96, 96))
    boxes, masks = official_region_boxes(heat, 178 / 255)
    torch.testing.assert_close(out.heat_maps[:, 0], heat)
    assert torch.equal(out.region_boxes[:, 0], boxes) and torch.equal(out.region_masks[:, 0], masks)
    post = extractor.feature_maps(pixels["pixel_values"][:, 0])
    torch.testing.assert_close(post, pre.clamp_min(0))  # f_g still pools the post-ReLU maps


# ------------------------------------------------------------------------------------------- Eq. 1-4, 6-8


def test_graph_node_values_are_eq_1_and_edge_weights_are_normalised(pixels) -> None:
    model = tiny_model()
    out = model.predict_tags(**pixels)
    graph = model.encoder.graph
    f = out.pooled_features
    torch.testing.assert_close(out.initial_node_values, torch.sigmoid(graph.tag_projection(f)))  # Eq. 1
    assert out.edge_weights.shape == (2, 28, 28) and (out.edge_weights >= 0).all()
    torch.testing.assert_close(out.edge_weights.sum(-1), torch.ones(2, 28))  # Eq. 2: Norm = softmax over j
    nodes = out.initial_node_values.unsqueeze(-1) * graph.node_embeddings  # "W_v v_i" = v_i · u_i
    scores = nodes @ nodes.transpose(1, 2) / math.sqrt(nodes.size(-1))
    torch.testing.assert_close(out.edge_weights, torch.softmax(scores, -1))
    # the fusion f_f = f_g + f_l feeds the graph
    visual = model.visual_extractor(pixels["pixel_values"])
    torch.testing.assert_close(f, visual.global_features + visual.local_features)
    product = tiny_model(fusion="product").visual_extractor(pixels["pixel_values"])
    torch.testing.assert_close(product.fused_features, product.global_features * product.local_features)


def test_decoder_is_tied_gpt_style_and_the_loss_sums_its_terms(pixels) -> None:
    model = tiny_model()
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 2]])
    labels = torch.tensor([[5, 6, 7, 2], [8, 9, 2, -100]])
    tags = torch.zeros(2, 28)
    tags[0, 3], tags[1, 10] = 1, 1
    out = model(**pixels, decoder_input_ids=ids, labels=labels, tag_labels=tags)
    enc = model.predict_tags(**pixels)
    hidden = model.decoder(ids, enc.last_hidden_state, enc.attention_mask)
    torch.testing.assert_close(out.logits, hidden @ model.decoder.embed_tokens.weight.T)  # Eq. 8, tied
    assert not any("lm_head" in name for name, _ in model.named_parameters())
    h0 = model.decoder.embed_tokens(ids) + model.decoder.embed_positions(torch.arange(4))  # Eq. 6 (dropout off)
    torch.testing.assert_close(model.decoder.embed(ids), h0)
    ce = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    graph = F.binary_cross_entropy(enc.node_values, tags)
    visual = sum(focal_loss(x, tags) for x in (enc.global_logits, enc.local_logits, enc.fusion_logits))
    torch.testing.assert_close(out.ce_loss, ce)
    torch.testing.assert_close(out.graph_tag_loss, graph, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.visual_tag_loss, visual)
    torch.testing.assert_close(out.loss, ce + graph + visual, rtol=1e-4, atol=1e-6)
    bce_model = tiny_model(tag_loss="bce")
    bce_out = bce_model(**pixels, decoder_input_ids=ids, labels=labels, tag_labels=tags)
    enc_b = bce_model.predict_tags(**pixels)
    expected = sum(F.binary_cross_entropy_with_logits(x, tags) for x in (enc_b.global_logits, enc_b.local_logits,
                                                                           enc_b.fusion_logits))  # fmt: skip
    torch.testing.assert_close(bce_out.visual_tag_loss, expected)
    out.loss.backward()
    local = model.encoder.visual_extractor.local_backbone
    assert sum(p.grad.abs().sum() for p in local.parameters() if p.grad is not None) > 0  # through f_l
    with pytest.raises(ValueError, match=r"tag_labels has shape \(2, 5\), expected \(2, 28\)"):
        model(**pixels, labels=labels, tag_labels=torch.zeros(2, 5))


def test_baseline_has_no_region_branch(pixels) -> None:
    model = tiny_model(use_internal_signals=False)
    assert model.visual_extractor.local_backbone is None
    assert not any("local" in name or "fusion" in name for name, _ in model.named_parameters())
    enc = model.predict_tags(**pixels)
    torch.testing.assert_close(enc.pooled_features, model.visual_extractor(pixels["pixel_values"]).global_features)
    assert enc.local_logits is None and enc.heat_maps is not None


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_with_and_without_cache(pixels, num_beams: int) -> None:
    model = tiny_model()
    with torch.no_grad():
        model.decoder.embed_tokens.weight.normal_(0, 0.5)  # a decoder that does not stop at once
    cached = model.generate(**pixels, num_beams=num_beams, use_cache=True, min_new_tokens=5)
    assert cached.shape[1] >= 6
    assert torch.equal(cached, model.generate(**pixels, num_beams=num_beams, use_cache=False, min_new_tokens=5))


def test_the_tag_loss_supervises_the_final_graph_and_reaches_its_attention(pixels) -> None:
    """Eq. 4's BCE is on "the final graph tag features": its gradient reaches the graph's multi-head self-attention,
    the prior nodes and the message projection of Eq. 3, not only W_v of Eq. 1."""
    model = tiny_model()
    tags = torch.zeros(2, 28)
    tags[0, 3], tags[1, 10] = 1, 1
    out = model(**pixels, labels=torch.tensor([[5, 2], [6, 2]]), tag_labels=tags)
    out.graph_tag_loss.backward()
    graph = model.encoder.graph
    for module in (graph.self_attention, graph.message_projection):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), module
    assert graph.prior_nodes.grad.abs().sum() > 0 and graph.tag_projection.weight.grad.abs().sum() > 0
    enc = model.predict_tags(**pixels)
    final = graph.tag_head(enc.last_hidden_state).squeeze(-1)  # one shared scalar head per final tag node
    torch.testing.assert_close(enc.tag_logits, final)
    torch.testing.assert_close(enc.node_values, torch.sigmoid(final))
    torch.testing.assert_close(out.graph_tag_loss, F.binary_cross_entropy(enc.node_values, tags), rtol=1e-4,
                               atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("layout", ["post", "pre"])
def test_decoder_blocks_are_gpts_post_norm_gelu_by_default(layout: str) -> None:
    """Default: x ← LN(x + SelfAttn(x)), x ← LN(x + CrossAttn(x, G)), x ← LN(x + W2 gelu_tanh(W1 x)), no final
    norm (GPT, the official `DecoderBlock`); "pre": x ← x + f(LN(x)) and a final norm, with ReLU."""
    options = {} if layout == "post" else {"decoder_norm": "pre", "decoder_activation": "relu"}
    model = tiny_model(**options)
    layer, decoder = model.decoder.layers[0], model.decoder
    torch.manual_seed(2)
    x, graph = torch.randn(2, 5, 32), torch.randn(2, 28, 32)
    mask = torch.ones(5, 5, dtype=torch.bool).tril().unsqueeze(0)
    ff = layer.feed_forward

    def attend(attention, query, states, attention_mask=None):
        return attention(query, states, states, attention_mask)[0]

    if layout == "post":
        assert isinstance(decoder.norm, torch.nn.Identity) and isinstance(layer.norms[0], torch.nn.LayerNorm)
        h = layer.norms[0](x + attend(layer.self_attn, x, x, mask))
        h = layer.norms[1](h + attend(layer.cross_attn, h, graph))
        expected = layer.norms[2](h + ff.w_2(F.gelu(ff.w_1(h), approximate="tanh")))
    else:
        n = layer.norms[0](x)
        h = x + attend(layer.self_attn, n, n, mask)
        h = h + attend(layer.cross_attn, layer.norms[1](h), graph)
        expected = h + ff.w_2(torch.relu(ff.w_1(layer.norms[2](h))))
    torch.testing.assert_close(layer(x, graph, None, mask)[0], expected)
    with pytest.raises(ValueError, match="decoder_norm must be one of"):
        ASGKConfig(decoder_norm="sandwich")


def test_textbook_mode_feeds_the_gru_encoding_to_the_graph() -> None:
    model = tiny_model()
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    mask = (ids != 0).long()
    signal = model.encode_sentences(ids, mask)
    assert signal.shape == (2, model.visual_extractor.num_features)  # GRU hidden = visual feature size
    again = model.encode_sentences(ids[1:, :4], mask[1:, :4])  # padding does not change the encoding
    torch.testing.assert_close(signal[1:], again)
    labels = torch.tensor([[5, 6, 7, 2, -100], [8, 9, 2, -100, -100]])
    out = model(textbook_input_ids=ids, textbook_attention_mask=mask, labels=labels, tag_labels=torch.zeros(2, 28))
    graph = model.encoder.graph(signal)
    torch.testing.assert_close(out.node_values, graph["node_values"])
    assert out.visual_tag_loss is None and out.graph_tag_loss is not None
    torch.testing.assert_close(out.loss, out.ce_loss + out.graph_tag_loss)
    with pytest.raises(ValueError, match=r"sentence_encoder_hidden_size \(64\) must equal the visual feature size"):
        ASGKForConditionalGeneration(ASGKConfig(**TINY, sentence_encoder_hidden_size=64))
    with pytest.raises(ValueError, match="no sentence encoder"):
        tiny_model(use_sentence_encoder=False).encode_sentences(ids)


def test_save_and_auto_load_round_trip(pixels, tmp_path) -> None:
    model = tiny_model(heatmap_mode="official", tag_names=["a", "b", "c"])
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is ASGKForConditionalGeneration and loaded.config.tag_names == ["a", "b", "c"]
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[name], loaded_state[name]) for name in state)
    torch.testing.assert_close(loaded.predict_tags(**pixels).node_values, model.predict_tags(**pixels).node_values)
    assert torch.equal(model.generate(**pixels), loaded.generate(**pixels))


def test_config_checks_name_the_field() -> None:
    assert ASGKConfig().num_tags == 28 and ASGKConfig().tag_names == list(ASGK_LABELER_TAGS)
    defaults = ASGKConfig()
    assert (defaults.d_model, defaults.num_layers, defaults.focal_alpha, defaults.focal_gamma) == (300, 3, 0.25, 2.0)
    assert (defaults.visual_backbone, defaults.visual_pretrained, defaults.region_size) == ("densenet121", False, 224)
    assert (defaults.fusion, defaults.tag_loss, defaults.textbook_max_length) == ("sum", "focal", 300)
    for kwargs, message in (
        ({"heatmap_mode": "mean"}, "heatmap_mode must be one of"),
        ({"fusion": "concat"}, "fusion must be one of"),
        ({"tag_loss": "hinge"}, "tag_loss must be one of"),
        ({"tag_names": ["a", "a"]}, "tag_names must be distinct"),
        ({"max_position_embeddings": 100}, "must cover max_seq_length"),
        ({"heatmap_threshold": 178}, "heatmap_threshold is τ on a \\[0, 1\\] heat map"),
    ):
        with pytest.raises(ValueError, match=message):
            ASGKConfig(**kwargs)


# ------------------------------------------------------------------------------------------- tags, text, GloVe


def test_labeler_tag_rows_and_sentence_matching() -> None:
    values = dict.fromkeys(("No Finding", "Cardiomegaly", "Edema", "Pneumothorax"))
    values.update({"Cardiomegaly": 1, "Edema": -1, "Pneumothorax": 0})
    row = labeler_tag_row(values)
    on = [ASGK_LABELER_TAGS[k] for k, v in enumerate(row) if v]
    assert on == ["Cardiomegaly: present", "Edema: present", "Pneumothorax: absent"]
    assert sum(labeler_tag_row(values, uncertain_as_present=False)) == 2
    sentence = "Mild cardiomegaly. No pneumothorax."
    assert match_tags(sentence, ASGK_LABELER_TAGS, "labeler") == labeler_tag_row({"Cardiomegaly": 1, "Pneumothorax": 0})
    assert match_tags("Left basilar opacity, no effusion", ["opacity", "effusion", "pacity"], "mesh") == [1, 1, 0]
    assert match_tags("右肺上叶可见磨玻璃影", ["磨玻璃影", "胸腔积液"], "column") == [1, 0]
    assert mesh_head_terms(["Opacity/lung/base/left", "opacity", "No Indexing", "Calcified Granuloma/lung"]) == [
        "opacity", "calcified granuloma"]  # fmt: skip


def test_tag_file_reader_names_the_problem(tmp_path) -> None:
    path = tmp_path / "tags.json"
    path.write_text('{"tag_names": ["a", "b"], "labels": {"s1": ["b"], "s2": [1, 0], "s3": []}}')
    tags = read_tag_file(path)
    assert tags.labels == {"s1": [0, 1], "s2": [1, 0], "s3": [0, 0]}  # [] lists no tag name: a study without tags
    assert tags.tensor(["s2", "s1"]).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match=r"no row for 1 study id\(s\) \(e.g. \['s4'\]\)"):
        tags.tensor(["s4"])
    path.write_text('{"tag_names": ["a"], "labels": {"s1": ["zzz"]}}')
    with pytest.raises(ValueError, match=r"study 's1' has tags \['zzz'\] that are not in tag_names"):
        read_tag_file(path)


def test_sentence_splitting_english_and_chinese() -> None:
    text = "Heart size is normal. The lungs are clear.\nNo XXXX effusion! Ok"
    assert split_textbook_sentences(text) == ["Heart size is normal.", "The lungs are clear.", "No effusion!"]
    assert split_textbook_sentences("胸廓对称。双肺纹理清晰；未见积液", "zh") == ["胸廓对称。", "双肺纹理清晰；", "未见积液"]


def test_glove_objective_by_hand_and_training_lowers_it(tmp_path) -> None:
    rows, cols, counts = cooccurrences([[4, 5, 6], [5, 4]], window=2, ignore=[0])
    pairs = {(int(r), int(c)): float(x) for r, c, x in zip(rows, cols, counts)}
    assert pairs == {(4, 5): 2.0, (5, 4): 2.0, (4, 6): 0.5, (6, 4): 0.5, (5, 6): 1.0, (6, 5): 1.0}  # 1 / distance
    torch.manual_seed(0)
    w, wc, b, bc = torch.randn(7, 3), torch.randn(7, 3), torch.randn(7), torch.randn(7)
    expected = sum(min(1.0, (x / 100.0) ** 0.75) * (float(w[i] @ wc[j] + b[i] + bc[j]) - math.log(x)) ** 2
                   for (i, j), x in pairs.items())  # fmt: skip
    assert glove_loss(w, wc, b, bc, rows, cols, counts).item() == pytest.approx(expected, rel=1e-5)
    corpus = [[4, 5, 6, 7, 8], [4, 5, 9], [6, 7, 8, 4], [5, 4, 6]] * 5
    vectors, history = train_glove(corpus, 10, dim=8, window=3, epochs=40, progress=False)
    assert vectors.shape == (10, 8) and history[-1] < 0.2 * history[0]
    vocab = {f"w{i}": i for i in range(10)}
    write_glove_text(tmp_path / "vectors.txt", vectors, vocab)
    read, found = read_glove_text(tmp_path / "vectors.txt", {**vocab, "unseen": 10})
    assert found == 10 and read.shape == (11, 8)
    torch.testing.assert_close(read[:10], vectors, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="has 8-d vectors; the model's d_model is 300"):
        read_glove_text(tmp_path / "vectors.txt", vocab, dim=300)
