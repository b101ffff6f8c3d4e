"""ITHN's formulas by hand: the projection of Eq. 6 (degenerate line included), λ = 1 − exp(−α·epoch), the
synthesised negatives of Eq. 2 and Eq. 5-7 on their segment/line, S3' and L_CP against Eq. 8-12 with plain loops,
L_CS (Eq. 1), and the model's Eq. 13 with every switch of Table 3."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hf_rrg  # noqa: F401
from hf_rrg.losses import (
    hardness_schedule,
    image_similarity_loss,
    ithn_clip_loss,
    ithn_similarity_matrix,
    project_onto_line,
    synthesize_hard_negatives,
)
from hf_rrg.modeling.configuration_ithn import ITHN_PRESETS, ITHNConfig
from hf_rrg.modeling.configuration_r2gen import R2GenCMNConfig
from hf_rrg.modeling.modeling_ithn import ITHNForConditionalGeneration, ITHNOutput

BACKBONE = dict(model_type="r2gencmn", visual_backbone="test_resnet", visual_pretrained=False, d_model=32, d_ff=64,
                num_heads=4, num_layers=1, max_seq_length=12, cmm_size=16, cmm_dim=32, topk=4)  # fmt: skip

# ------------------------------------------------------------------------------------------ Eq. 6: projection


def test_projection_is_the_foot_of_the_perpendicular() -> None:
    a, b = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([2.0, 0.0, 0.0])
    assert project_onto_line(torch.tensor([1.0, 2.0, 0.0]), a, b).tolist() == [1.0, 0.0, 0.0]
    assert project_onto_line(torch.tensor([5.0, -1.0, 3.0]), a, b).tolist() == [5.0, 0.0, 0.0]  # beyond b: the line
    assert project_onto_line(torch.tensor([5.0, -1.0, 3.0]), a, b, clamp=True).tolist() == [2.0, 0.0, 0.0]
    # a slanted line through (1, 1) and (3, 2): p = a + t(b − a) with t = (x − a)·(b − a)/|b − a|² = (2·2 + 0·1)/5
    p = project_onto_line(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0]), torch.tensor([3.0, 2.0]))
    torch.testing.assert_close(p, torch.tensor([1.0 + 0.8 * 2, 1.0 + 0.8 * 1]))
    torch.manual_seed(0)
    x, a, b = torch.randn(5, 7), torch.randn(5, 7), torch.randn(5, 7)
    p = project_onto_line(x, a, b)
    torch.testing.assert_close(((x - p) * (b - a)).sum(-1), torch.zeros(5), atol=1e-5, rtol=0)  # orthogonal
    t = ((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1)
    torch.testing.assert_close(p, a + t[:, None] * (b - a))  # on the line
    # the paper's Eq. 6 literally: ũ + ((z − ũ)·(u − ũ)/‖u − ũ‖)·(u − ũ)/‖u − ũ‖
    norm = (b - a).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(p, a + ((x - a) * (b - a)).sum(-1, keepdim=True) / norm * (b - a) / norm)


def test_projection_on_a_degenerate_line_is_the_point_and_never_nan() -> None:
    a = torch.tensor([[0.3, -0.2, 0.9], [1.0, 0.0, 0.0]], requires_grad=True)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], requires_grad=True)
    p = project_onto_line(x, a, a.clone())
    assert torch.equal(p, a) and not torch.isnan(p).any()
    p.sum().backward()
    assert not torch.isnan(a.grad).any() and not torch.isnan(x.grad).any()
    u = torch.tensor([[1.0, 0.0, 0.0]])
    synthesized = synthesize_hard_negatives(u, u.clone(), 0.7, "projection", image=torch.tensor([[0.0, 1.0, 0.0]]))
    assert torch.equal(synthesized, u)  # u_i = u_i⁻: ũ = u_i⁻


# --------------------------------------------------------------------------------------------- λ and Eq. 2, 7


def test_hardness_schedule() -> None:
    assert hardness_schedule(0) == 0.0
    assert hardness_schedule(1) == pytest.approx(1 - math.exp(-0.01))
    assert hardness_schedule(50, alpha=0.01) == pytest.approx(0.3934693, abs=1e-7)
    assert hardness_schedule(10, alpha=0.1) == pytest.approx(1 - math.exp(-1))
    values = [hardness_schedule(epoch) for epoch in range(0, 200, 10)]
    assert all(x < y for x, y in zip(values, values[1:])) and values[-1] < 1
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        hardness_schedule(-1)


def _on_segment(point: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(coefficient t of point = a + t(b − a), distance of point from the line)."""
    t = ((point - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1)
    return t, (point - (a + t[:, None] * (b - a))).norm(dim=-1)


def test_mochi_negative_is_eq_2_and_lies_on_the_segment() -> None:
    torch.manual_seed(1)
    u, u_neg = torch.randn(6, 8), torch.randn(6, 8)
    for lam in (0.0, 0.25, 0.9):
        synthesized = synthesize_hard_negatives(u, u_neg, lam, "mochi")
        torch.testing.assert_close(synthesized, (1 - lam) * u_neg + lam * u)
        t, distance = _on_segment(synthesized, u_neg, u)
        torch.testing.assert_close(t, torch.full((6,), lam))
        assert distance.max() < 1e-5
    # k neighbours per row: one is drawn per row, and the result mixes u_i with that one
    neighbours = torch.randn(6, 4, 8)
    drawn = synthesize_hard_negatives(u, neighbours, 0.5, "mochi", generator=torch.Generator().manual_seed(3))
    choice = torch.randint(4, (6,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(drawn, 0.5 * neighbours[torch.arange(6), choice] + 0.5 * u)


def test_projection_negative_is_eq_7_on_the_line_and_on_the_segment_when_p_is() -> None:
    torch.manual_seed(2)
    u, u_neg, z = torch.randn(6, 8), torch.randn(6, 8), torch.randn(6, 8)
    z[0] = u[0] + 3 * (u[0] - u_neg[0])  # projects beyond u_i (t = 4)
    z[1] = u_neg[1] - 2 * (u[1] - u_neg[1]) + 0.1 * torch.randn(8)  # projects before u_i⁻
    lam = hardness_schedule(30)
    synthesized = synthesize_hard_negatives(u, u_neg, lam, "projection", image=z)
    p = project_onto_line(z, u_neg, u)
    torch.testing.assert_close(synthesized, (1 - lam) * u_neg + lam * p)  # Eq. 7 with the prior u_i⁻
    t_p, _ = _on_segment(p, u_neg, u)
    t, distance = _on_segment(synthesized, u_neg, u)
    assert distance.max() < 1e-5  # on the line through u_i⁻ and u_i
    torch.testing.assert_close(t, lam * t_p)
    inside = (t_p >= 0) & (t_p <= 1)
    assert inside[2:].all() and not inside[:2].any()  # both cases occur
    assert ((t[inside] >= 0) & (t[inside] <= 1)).all()  # p on the segment -> ũ on the segment
    clamped = synthesize_hard_negatives(u, u_neg, lam, "projection", image=z, clamp=True)
    t, distance = _on_segment(clamped, u_neg, u)
    assert distance.max() < 1e-5 and (t >= -1e-6).all() and (t <= lam + 1e-6).all()
    torch.testing.assert_close(t[:2], torch.tensor([lam, 0.0]), atol=1e-6, rtol=0)  # clipped to u_i, u_i⁻
    assert torch.equal(synthesize_hard_negatives(u, u_neg, 0.0, "projection", image=z), u_neg)  # λ = 0: the prior
    assert torch.equal(synthesize_hard_negatives(u, u_neg, 0.8, "none"), u_neg)
    with pytest.raises(ValueError, match="needs the image features"):
        synthesize_hard_negatives(u, u_neg, 0.5, "projection")
    with pytest.raises(ValueError, match="strategy must be one of"):
        synthesize_hard_negatives(u, u_neg, 0.5, "harder")


# ------------------------------------------------------------------------------------------------ Eq. 1, 8-12


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def hand_clip_loss(z, u, z_neg, u_neg, u_syn, tau: float) -> tuple[list[list[float]], float]:
    """S of Eq. 11 (S3 with a negated diagonal) and L_CP of Eq. 12 with plain Python."""
    n = len(z)
    s = [[(_cos(z[i], u[j]) + _cos(z_neg[i], u_neg[j]) + (-1 if i == j else 1) * _cos(z[i], u_syn[j])) / 3
          for j in range(n)] for i in range(n)]  # fmt: skip

    def l_con(matrix):
        total = 0.0
        for i in range(n):
            denominator = sum(math.exp(matrix[i][k] / tau) for k in range(n))
            total += -math.log(math.exp(matrix[i][i] / tau) / denominator)
        return total / n

    transposed = [[s[j][i] for j in range(n)] for i in range(n)]
    return s, (l_con(s) + l_con(transposed)) / 2


def test_s3_prime_and_clip_loss_equal_eq_8_to_12_by_hand() -> None:
    torch.manual_seed(4)
    z, u, z_neg, u_neg, u_syn = (torch.randn(5, 6) for _ in range(5))
    expected_s, expected_loss = hand_clip_loss(*(t.tolist() for t in (z, u, z_neg, u_neg, u_syn)), tau=0.07)
    s = ithn_similarity_matrix(z, u, z_neg, u_neg, u_syn)
    torch.testing.assert_close(s, torch.tensor(expected_s), atol=1e-6, rtol=0)
    s3 = F.normalize(z, dim=-1) @ F.normalize(u_syn, dim=-1).T
    s1 = F.normalize(z, dim=-1) @ F.normalize(u, dim=-1).T
    s2 = F.normalize(z_neg, dim=-1) @ F.normalize(u_neg, dim=-1).T
    s3_prime = 3 * s - s1 - s2
    torch.testing.assert_close(s3_prime.diagonal(), -s3.diagonal(), atol=1e-5, rtol=0)
    off = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(s3_prime[off], s3[off], atol=1e-5, rtol=0)
    loss = ithn_clip_loss(z, u, z_neg, u_neg, u_syn, temperature=0.07)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert ithn_clip_loss(z, u, z_neg, u_neg, u_syn, temperature=torch.tensor(0.5)).item() == pytest.approx(
        hand_clip_loss(*(t.tolist() for t in (z, u, z_neg, u_neg, u_syn)), tau=0.5)[1], rel=1e-5
    )
    # the harder the negative sits on z_i, the larger the loss (S3' subtracts cos(z_i, ũ_i))
    easy = ithn_clip_loss(z, u, z_neg, u_neg, -z, temperature=0.07)
    hard = ithn_clip_loss(z, u, z_neg, u_neg, z, temperature=0.07)
    assert hard > easy


def test_image_similarity_loss_is_eq_1_with_the_absolute_value_option() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z_neg = torch.tensor([[1.0, 1.0], [0.0, -3.0]])
    assert image_similarity_loss(z, z_neg, absolute=False).item() == pytest.approx((1 / math.sqrt(2) - 1) / 2)
    assert image_similarity_loss(z, z_neg, absolute=True).item() == pytest.approx((1 / math.sqrt(2) + 1) / 2)
    with pytest.raises(ValueError, match="differ"):
        image_similarity_loss(z, z_neg[:1])


# --------------------------------------------------------------------------------------------- the model, Eq. 13


def tiny_ithn(**overrides) -> ITHNForConditionalGeneration:
    torch.manual_seed(0)
    return ITHNForConditionalGeneration(ITHNConfig(backbone_config=dict(BACKBONE), vocab_size=30, embed_dim=16,
                                                   **overrides))  # fmt: skip


def batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    return {
        "pixel_values": torch.randn(3, 1, 3, 32, 32),
        "labels": torch.tensor([[5, 6, 7, 2], [8, 9, 2, -100], [4, 2, -100, -100]]),
        "negative_pixel_values": torch.randn(3, 2, 3, 32, 32),
        "negative_view_mask": torch.tensor([[True, True], [True, False], [True, True]]),
        "negative_labels": torch.tensor([[5, 6, 2], [8, 2, -100], [9, 9, 2]]),
    }


def test_model_loss_is_eq_13_and_ce_covers_the_anchors_only() -> None:
    model = tiny_ithn().eval()  # eval: no dropout, batch-norm statistics fixed -> the joint pass equals separate ones
    inputs = batch()
    out = model(**inputs, epoch=20)
    plain = model.backbone(pixel_values=inputs["pixel_values"], labels=inputs["labels"])
    torch.testing.assert_close(out.logits, plain.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.ce_loss, plain.loss, atol=1e-5, rtol=1e-4)
    lam = 1 - math.exp(-0.01 * 20)
    assert out.hardness.item() == pytest.approx(lam)
    expected_syn = synthesize_hard_negatives(out.report_embeds, out.negative_report_embeds, lam, "projection",
                                             image=out.image_embeds)  # fmt: skip
    torch.testing.assert_close(out.synthesized_negative_embeds, expected_syn)
    torch.testing.assert_close(out.clip_loss, ithn_clip_loss(out.image_embeds, out.report_embeds,
                               out.negative_image_embeds, out.negative_report_embeds, expected_syn, 0.07))  # fmt: skip
    torch.testing.assert_close(out.cs_loss, image_similarity_loss(out.image_embeds, out.negative_image_embeds))
    torch.testing.assert_close(out.loss, out.ce_loss + 0.1 * out.clip_loss + 0.2 * out.cs_loss)
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(3))  # l2-normalised (§4.2)
    # the neighbour's features are its own: recomputing them from the neighbour batch alone gives the same z⁻
    swapped = model(pixel_values=inputs["negative_pixel_values"], view_mask=inputs["negative_view_mask"],
                    labels=inputs["negative_labels"], negative_pixel_values=inputs["pixel_values"],
                    negative_labels=inputs["labels"], epoch=20)  # fmt: skip
    torch.testing.assert_close(swapped.image_embeds, out.negative_image_embeds, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(swapped.report_embeds, out.negative_report_embeds, atol=1e-5, rtol=1e-4)
    model.set_epoch(20)
    torch.testing.assert_close(model(**inputs).loss, out.loss)  # the epoch set on the model is used


def test_ce_on_negatives_and_the_table_3_switches() -> None:
    inputs = batch()
    both = tiny_ithn(ce_on_negatives=True).eval()(**inputs)
    model = tiny_ithn().eval()
    a = model.backbone(pixel_values=inputs["pixel_values"], labels=inputs["labels"]).logits
    b = model.backbone(pixel_values=inputs["negative_pixel_values"], view_mask=inputs["negative_view_mask"],
                       labels=inputs["negative_labels"]).logits  # fmt: skip
    tokens = torch.cat([a.flatten(0, 1), b.flatten(0, 1)])
    targets = torch.cat([inputs["labels"].flatten(), inputs["negative_labels"].flatten()])
    torch.testing.assert_close(both.ce_loss, F.cross_entropy(tokens, targets, ignore_index=-100), atol=1e-5, rtol=1e-4)

    no_cp = tiny_ithn(use_clip_loss=False).eval()(**inputs)
    assert no_cp.clip_loss is None and no_cp.synthesized_negative_embeds is None
    torch.testing.assert_close(no_cp.loss, no_cp.ce_loss + 0.2 * no_cp.cs_loss)
    no_cs = tiny_ithn(use_cs_loss=False).eval()(**inputs)
    assert no_cs.cs_loss is None
    torch.testing.assert_close(no_cs.loss, no_cs.ce_loss + 0.1 * no_cs.clip_loss)
    none = tiny_ithn(synthesis="none").eval()(**inputs, epoch=40)
    assert torch.equal(none.synthesized_negative_embeds, none.negative_report_embeds)
    mochi = tiny_ithn(synthesis="mochi").eval()(**inputs, epoch=40)
    lam = hardness_schedule(40)
    torch.testing.assert_close(mochi.synthesized_negative_embeds,
                               (1 - lam) * mochi.negative_report_embeds + lam * mochi.report_embeds)  # fmt: skip
    plain = model(pixel_values=inputs["pixel_values"], labels=inputs["labels"])  # no neighbours: the backbone's
    assert plain.clip_loss is None and plain.cs_loss is None and torch.equal(plain.loss, plain.ce_loss)


def test_gradients_reach_the_heads_and_the_temperature_but_not_through_the_synthesised_negative() -> None:
    model = tiny_ithn().train()
    out = model(**batch(), epoch=10)
    assert out.synthesized_negative_embeds.requires_grad is False  # Eq. 3: ũ fixed while the weights update
    (out.clip_loss + out.cs_loss).backward()  # the ITHN terms alone
    head = model.ithn_head
    assert head.image_projection.weight.grad.abs().sum() > 0 and head.report_projection.weight.grad.abs().sum() > 0
    assert head.logit_scale.grad is not None and head.logit_scale.grad.abs() > 0
    cnn = model.backbone.encoder.visual_extractor.backbone
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cnn.parameters())  # L_CS and L_CP reach it
    frozen = tiny_ithn(learnable_temperature=False)
    assert not frozen.ithn_head.logit_scale.requires_grad
    assert frozen.ithn_head.temperature().item() == pytest.approx(0.07)


def test_config_round_trip_defaults_and_errors(tmp_path) -> None:
    config = ITHNConfig()
    assert (config.synthesis, config.hardness_alpha, config.clip_loss_weight, config.cs_loss_weight) == (
        "projection", 0.01, 0.1, 0.2)  # fmt: skip
    assert config.embed_dim == 512 and config.initial_temperature == 0.07 and config.cs_absolute
    assert isinstance(config.backbone_config, R2GenCMNConfig) and config.max_seq_length == 60
    config = ITHNConfig(backbone_config={"model_type": "xpronet", "max_seq_length": 100}, vocab_size=77,
                        synthesis="mochi")  # fmt: skip
    assert config.backbone_type == "xpronet" and config.backbone_config.vocab_size == 77
    config.save_pretrained(tmp_path)
    loaded = ITHNConfig.from_pretrained(tmp_path)
    assert loaded.backbone_config.to_dict() == config.backbone_config.to_dict()
    assert (loaded.synthesis, loaded.max_seq_length, loaded.vocab_size) == ("mochi", 100, 77)
    with pytest.raises(ValueError, match="synthesis must be one of"):
        ITHNConfig(synthesis="harder")
    with pytest.raises(ValueError, match="is not an ITHN backbone"):
        ITHNConfig(backbone_config={"model_type": "coatt"})
    with pytest.raises(ValueError, match="negative_pixel_values"):
        tiny_ithn()(pixel_values=torch.randn(1, 1, 3, 32, 32), labels=torch.tensor([[5, 2]]),
                    negative_labels=torch.tensor([[5, 2]]))  # fmt: skip


# ------------------------------------------------------------------------------------- the official-code preset


def test_paper_preset_is_the_default_config() -> None:
    default, paper = ITHNConfig(), ITHNConfig.from_preset("paper")
    for key, value in ITHN_PRESETS["paper"].items():
        assert getattr(default, key) == value == getattr(paper, key), key
    with pytest.raises(ValueError, match="unknown ITHN preset 'github'"):
        ITHNConfig.from_preset("github")


def test_official_preset_total_loss_on_hand_made_tensors() -> None:
    """0.7·L_CE + 0.1·L_CP + 0.2·L_CS with the official code's features and temperatures, written out by hand."""
    config = ITHNConfig.from_preset("official", backbone_config=dict(BACKBONE), vocab_size=30, embed_dim=3,
                                    image_feature_dim=4, report_feature_dim=3)  # fmt: skip
    model = ITHNForConditionalGeneration(config).train()
    head = model.ithn_head
    assert head.image_projection.bias is None and head.report_projection.bias is None  # bias-free projections
    w_img = torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.5, 1.0, 0.0, 0.0], [0.0, -1.0, 1.0, 3.0]])
    w_txt = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [2.0, 0.0, 1.0]])
    with torch.no_grad():
        head.image_projection.weight.copy_(w_img)
        head.report_projection.weight.copy_(w_txt)
        head.logit_scale.fill_(math.log(150.0))  # above CLIP's cap of 100: the official code does not cap
        head.synthesis_logit_scale.fill_(math.log(20.0))  # S3's own learned temperature
    pooled = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0],  # z_1, z_2 (anchors)
                           [2.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])  # z_1⁻, z_2⁻ (neighbours)  # fmt: skip
    torch.manual_seed(11)
    hidden = torch.randn(4, 3, 3)  # decoder states; anchors padded to 3 positions, neighbours to 2
    anchors = {"decoder_input_ids": torch.zeros(2, 3, dtype=torch.long)}
    negatives = {"decoder_input_ids": torch.zeros(2, 2, dtype=torch.long)}
    mask = model._report_mask(hidden, {}, anchors, negatives)
    output = ITHNOutput(backbone_loss=torch.tensor(2.0))
    out = model.ithn_objective(pooled, hidden, mask, output, epoch=30)

    # the formula, step by step
    z = F.normalize(pooled @ w_img.T, dim=-1)
    means = torch.stack([hidden[0].mean(0), hidden[1].mean(0), hidden[2, :2].mean(0), hidden[3, :2].mean(0)])
    u = F.normalize(means @ w_txt.T, dim=-1)  # every (padded) position of the pass, as the official code
    z_pos, z_neg, u_pos, u_neg = z[:2], z[2:], u[:2], u[2:]
    lam = 1 - math.exp(-0.01 * 30)
    direction = u_pos - u_neg
    p = u_neg + ((z_pos - u_neg) * direction).sum(-1, keepdim=True) / (direction**2).sum(-1, keepdim=True) * direction
    synthesized = (1 - lam) * u_neg + lam * p  # Eq. 6-7
    s1, s2 = z_pos @ u_pos.T, z_neg @ u_neg.T
    s3 = z_pos @ F.normalize(synthesized, dim=-1).T
    s3 = s3 * (1 - 2 * torch.eye(2))  # S3': diagonal times −1 (the paper; the official code zeroes the rest)
    logits = (150.0 * s1 + 150.0 * s2 + 20.0 * s3) / 3
    target = torch.arange(2)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    cs = (z_pos * z_neg).sum(-1).abs().mean()
    torch.testing.assert_close(out.clip_loss, clip)
    torch.testing.assert_close(out.cs_loss, cs)
    torch.testing.assert_close(out.loss, 0.7 * 2.0 + 0.1 * clip + 0.2 * cs)
    assert out.synthesized_negative_embeds.requires_grad  # ũ is not detached in the official code


def test_single_view_reads_the_first_view_of_every_study() -> None:
    inputs = batch()
    model = tiny_ithn(single_view=True).eval()
    first = dict(inputs, negative_pixel_values=inputs["negative_pixel_values"][:, :1],
                 negative_view_mask=inputs["negative_view_mask"][:, :1])  # fmt: skip
    torch.testing.assert_close(model(**inputs, epoch=3).loss, model(**first, epoch=3).loss)
    both = tiny_ithn().eval()(**inputs, epoch=3)
    assert not torch.allclose(both.negative_image_embeds, model(**inputs, epoch=3).negative_image_embeds)
    two_views = inputs["negative_pixel_values"][:2]
    generated = model.generate(pixel_values=two_views, max_length=5, num_beams=1)
    assert torch.equal(generated, model.generate(pixel_values=two_views[:, :1], max_length=5, num_beams=1))
