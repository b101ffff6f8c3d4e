"""XProNet: the contrastive loss against Eq. 17-18 by hand, prototype querying against a hand-built PM (Eq. 8-13),
the model's loss (Eq. 20 + label head), generation with/without cache and labels, save/load, and memorisation of
8 real reports generated back from the image alone."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

import hf_rrg  # noqa: F401
from hf_rrg.losses import xpronet_multilabel_contrastive_loss
from hf_rrg.modeling.configuration_xpronet import XPRONET_OBSERVATIONS, XProNetConfig
from hf_rrg.modeling.modeling_xpronet import XProNetForConditionalGeneration
from hf_rrg.modeling.prototype_network import PrototypeQuerying

TINY = dict(
    vocab_size=40, visual_backbone="test_resnet", visual_pretrained=False, d_model=32, d_ff=64, num_heads=4,
    num_layers=2, max_seq_length=14, prototype_visual_dim=96, prototype_text_dim=16, num_prototypes_per_class=4,
    prototype_top_k=3, prototype_num_heads=4,
)  # fmt: skip


# ------------------------------------------------------------------------------------------- Eq. 17-18 by hand


def hand_loss(features: list[list[float]], labels: list[list[int]], margin: float, theta: float, improved=True):
    """Eq. 17-18 with plain Python loops over (already pooled) features, the positive term clipped at 0 (§3.4 and
    the official code)."""
    normed = [[x / math.sqrt(sum(v * v for v in f)) for x in f] for f in features]
    batch, total = len(features), 0.0
    for i in range(batch):
        for j in range(batch):
            if i == j:
                continue
            sim = sum(a * b for a, b in zip(normed[i], normed[j]))
            if sum(a * b for a, b in zip(labels[i], labels[j])) > 0:
                h_d = sum(abs(a - b) for a, b in zip(labels[i], labels[j]))
                h_t = sum(a + b for a, b in zip(labels[i], labels[j]))
                total += max((theta ** (-h_d / h_t) if improved else 1.0) - sim, 0.0)
            else:
                total += max(sim - margin, 0.0)
    return total / batch**2


@pytest.mark.parametrize(
    "labels",
    [
        [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]],  # mixed positive and negative pairs
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]],  # no positive pair
        [[1, 1, 0], [1, 0, 0], [1, 0, 1], [1, 1, 1]],  # no negative pair
    ],
)
@pytest.mark.parametrize("improved", [True, False])
def test_contrastive_loss_equals_eq_17_18_by_hand(labels, improved) -> None:
    torch.manual_seed(0)
    features = torch.randn(4, 5, 6)
    features[1] = features[0] + 0.1 * torch.randn(5, 6)  # a similar pair, above the margin
    pooled = features.mean(dim=1)
    expected = hand_loss(pooled.tolist(), labels, margin=0.4, theta=1.75, improved=improved)
    got = xpronet_multilabel_contrastive_loss(features, torch.tensor(labels), margin=0.4, theta=1.75, improved=improved)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    assert expected != 0.0


def test_contrastive_loss_values_on_a_tiny_case() -> None:
    """Two orthogonal samples sharing 1 of 3 labels: (θ^(-1/3) - 0) twice over B² = 4; masked positions ignored."""
    features = torch.tensor([[[1.0, 0.0], [9.0, 9.0]], [[0.0, 2.0], [0.0, 2.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    labels = torch.tensor([[1, 1], [1, 0]])
    got = xpronet_multilabel_contrastive_loss(features, labels, mask=mask, theta=1.75)
    assert got.item() == pytest.approx(2 * 1.75 ** (-1 / 3) / 4, abs=1e-6)
    negative = xpronet_multilabel_contrastive_loss(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1], [0]]))
    assert negative.item() == pytest.approx(2 * (1 / math.sqrt(2) - 0.4) / 4, abs=1e-6)
    with pytest.raises(ValueError, match="labels must be"):
        xpronet_multilabel_contrastive_loss(features, torch.tensor([1, 0]))


def _pair_gradient(theta: float, improved: bool = True) -> tuple[float, torch.Tensor]:
    """Loss and gradient for two samples sharing 1 of their 3 labels (h_d/h_t = 1/3) whose cosine is 0.85: above
    the target θ^(-1/3) for θ = 1.75 (0.830) and 3 (0.693), below it for θ = 1.5 (0.874) and without IMLCS (1)."""
    cosine = 0.85
    features = torch.tensor([[1.0, 0.0], [cosine, math.sqrt(1 - cosine**2)]], requires_grad=True)
    loss = xpronet_multilabel_contrastive_loss(features, torch.tensor([[1, 1, 0], [1, 0, 0]]), theta=theta,
                                               improved=improved)  # fmt: skip
    loss.backward()
    return loss.item(), features.grad


def test_theta_and_the_improved_target_change_the_gradient() -> None:
    """A positive pair already closer than its target costs nothing (clipped), so θ and `improved` decide which
    pairs are pulled: the Table 2 "w/o IMLCS" ablation and θ (Fig. 6) are not no-ops."""
    loss_15, grad_15 = _pair_gradient(1.5)
    loss_175, grad_175 = _pair_gradient(1.75)
    loss_3, grad_3 = _pair_gradient(3.0)
    loss_plain, grad_plain = _pair_gradient(1.75, improved=False)
    assert loss_15 == pytest.approx(2 * (1.5 ** (-1 / 3) - 0.85) / 4, abs=1e-6)
    assert loss_plain == pytest.approx(2 * (1.0 - 0.85) / 4, abs=1e-6)
    assert loss_175 == 0.0 and loss_3 == 0.0
    assert torch.all(grad_175 == 0) and torch.all(grad_3 == 0)
    assert grad_15.abs().sum() > 0 and not torch.allclose(grad_15, grad_175)
    assert not torch.allclose(grad_plain, grad_175)


# -------------------------------------------------------------------------------------- querying, Eq. 8-13


def identity_querying(gamma: int, weighting: str = "softmax") -> PrototypeQuerying:
    """One head, d = 4, identity W_v / W_p / W_e / output: scores are plain dot products."""
    module = PrototypeQuerying(4, 4, 4, num_heads=1, top_k=gamma, weighting=weighting, dropout=0.0)
    with torch.no_grad():
        for linear in (module.query_proj, module.key_proj, module.value_proj, module.out_proj):
            linear.weight.copy_(torch.eye(4))
            linear.bias.zero_()
    return module


def test_querying_picks_the_top_gamma_prototypes_of_the_samples_own_classes() -> None:
    # 3 classes x 5 prototypes; prototype (k, i) = scale[k, i] * e_0, so a query e_0 scores it scale[k, i].
    scale = torch.tensor([[9.0, 8.5, 8.0, 7.5, 7.0],  # class 0: the best overall, but not the sample's class
                          [1.0, 3.0, 2.0, 5.0, 4.0],
                          [2.5, 0.5, 4.5, 1.5, 3.5]])  # fmt: skip
    prototypes = torch.zeros(15, 4)
    prototypes[:, 0] = scale.flatten()
    prototypes[:, 1] = torch.arange(15.0)  # a value tag; orthogonal to the query so it does not change scores
    query = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    allowed = torch.tensor([[False] * 5 + [True] * 10])  # classes 1 and 2
    module = identity_querying(gamma=4)
    response, index, weights = module(query, prototypes, allowed, return_selection=True)
    assert sorted(index.flatten().tolist()) == [8, 9, 12, 14]  # scores 5, 4, 4.5, 3.5; class 0's 9..7 left out
    assert sorted(index.flatten().tolist()) == sorted(scale.flatten()[5:].topk(4).indices.add(5).tolist())
    top = scale.flatten()[index.flatten()]
    expected_weights = torch.softmax(top / 2.0, dim=0)  # softmax over q·k / sqrt(d)
    torch.testing.assert_close(weights.flatten(), expected_weights)
    torch.testing.assert_close(response[0, 0], expected_weights @ prototypes[index.flatten()])  # Eq. 13

    eq11 = identity_querying(gamma=4, weighting="normalized")
    response, index, weights = eq11(query, prototypes, allowed, return_selection=True)
    top = scale.flatten()[index.flatten()]
    torch.testing.assert_close(weights.flatten(), top / top.sum())  # Eq. 11 (the 1/d of Eq. 10 cancels)
    torch.testing.assert_close(response[0, 0], (top / top.sum()) @ prototypes[index.flatten()])


def test_querying_gives_no_weight_to_other_classes_when_fewer_than_gamma_are_allowed() -> None:
    prototypes = torch.zeros(6, 4)
    prototypes[:, 0] = torch.tensor([9.0, 8.0, 7.0, 1.0, 2.0, 3.0])
    prototypes[:, 2] = 1.0
    module = identity_querying(gamma=4)
    allowed = torch.tensor([[False, False, False, True, True, False], [False] * 6])
    response, index, weights = module(torch.tensor([[[1.0, 0, 0, 0]], [[1.0, 0, 0, 0]]]), prototypes, allowed, True)
    kept = weights[0, 0, 0] > 0
    assert sorted(index[0, 0, 0][kept].tolist()) == [3, 4]
    torch.testing.assert_close(weights[0, 0, 0][kept].sum(), torch.tensor(1.0))
    assert torch.all(weights[1] == 0) and torch.all(response[1] == 0)  # a label-less sample gets no response


def test_a_sample_without_allowed_prototypes_gets_a_zero_response_whatever_the_biases() -> None:
    """`no_positive_slot=None` leaves a label-less sample without prototypes: its response is zero (not the output
    projection's bias), so its fused feature is FCN(x ‖ 0) (Eq. 14)."""
    torch.manual_seed(3)
    module = PrototypeQuerying(8, 6, 8, num_heads=2, top_k=3, dropout=0.0)
    assert module.out_proj.bias.abs().sum() > 0
    allowed = torch.tensor([[True] * 4 + [False] * 6, [False] * 10])
    response = module(torch.randn(2, 5, 8), torch.randn(10, 6), allowed)
    assert torch.all(response[1] == 0) and torch.all(response[0] != 0)


def test_multi_head_querying_matches_a_brute_force_loop() -> None:
    torch.manual_seed(5)
    module = PrototypeQuerying(8, 6, 8, num_heads=2, top_k=3, dropout=0.0)
    queries, prototypes = torch.randn(2, 3, 8), torch.randn(10, 6)
    allowed = torch.tensor([[True] * 5 + [False] * 5, [False] * 3 + [True] * 7])
    out = module(queries, prototypes, allowed)
    q = module.query_proj(queries).view(2, 3, 2, 4)
    k, v = module.key_proj(prototypes).view(10, 2, 4), module.value_proj(prototypes).view(10, 2, 4)
    heads = torch.empty(2, 3, 2, 4)
    for b in range(2):
        ok = allowed[b].nonzero().flatten()
        for i in range(3):
            for h in range(2):
                scores = k[ok, h] @ q[b, i, h] / 2.0
                best = scores.topk(3).indices
                heads[b, i, h] = torch.softmax(scores[best], dim=0) @ v[ok[best], h]
    torch.testing.assert_close(out, module.out_proj(heads.reshape(2, 3, 8)))


# ------------------------------------------------------------------------------------------------ the model


def tiny_model(**overrides) -> XProNetForConditionalGeneration:
    torch.manual_seed(0)
    model = XProNetForConditionalGeneration(XProNetConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] = -20.0
        model.load_prototypes(torch.randn_like(model.prototype_network.prototypes))  # labels matter visibly
    return model.eval()


@pytest.fixture(scope="module")
def pixels(shared_data) -> dict[str, torch.Tensor]:
    from hf_rrg import RRGImageProcessor

    images = shared_data / "misc_cxr_images"
    studies = [[images / "00000001_000.png", images / "h0001.png"], [images / "16747_3_1.jpg"]]
    return dict(RRGImageProcessor(eval_size=(64, 64), max_views=2)([[str(p) for p in s] for s in studies]))


def test_default_config_is_the_papers() -> None:
    config = XProNetConfig()
    assert config.observation_names == list(XPRONET_OBSERVATIONS) and config.observation_names[-1] == "No Finding"
    assert (config.num_observations, config.num_prototypes_per_class, config.prototype_dim) == (14, 20, 2048 + 768)
    assert (config.prototype_top_k, config.contrastive_theta, config.contrastive_margin) == (15, 1.75, 0.4)
    assert (config.visual_contrastive_weight, config.text_contrastive_weight) == (1.0, 0.1)
    assert (config.d_model, config.num_layers, config.num_heads, config.prototype_projection_dim) == (512, 3, 8, 512)
    assert config.uncertain_as_positive and config.no_positive_index == 13 and config.prototype_weighting == "softmax"
    with pytest.raises(ValueError, match="no_positive_slot 'Normal' is not one of"):
        XProNetConfig(no_positive_slot="Normal")
    with pytest.raises(ValueError, match="prototype_weighting must be one of"):
        XProNetConfig(prototype_weighting="sum")


def test_loss_is_eq_20_plus_the_label_head(pixels) -> None:
    model = tiny_model().train()
    torch.manual_seed(1)
    labels = torch.tensor([[5, 6, 7, 2, -100], [8, 9, 2, -100, -100]])
    observations = torch.zeros(2, 14)
    observations[0, [1, 4]] = 1.0
    out = model(**pixels, labels=labels, observation_labels=observations)
    assert out.observation_labels[1].tolist() == [0.0] * 13 + [1.0]  # no positive -> "No Finding"
    log_probs = F.log_softmax(out.logits, dim=-1)
    kept = labels != -100
    torch.testing.assert_close(out.ce_loss, -log_probs[kept].gather(1, labels[kept][:, None]).mean())
    torch.testing.assert_close(out.label_loss, F.binary_cross_entropy_with_logits(out.observation_logits, observations))
    expected = out.ce_loss + 1.0 * out.visual_contrastive_loss + 0.1 * out.text_contrastive_loss + out.label_loss
    torch.testing.assert_close(out.loss, expected)
    assert out.visual_contrastive_loss.item() >= 0 and out.text_contrastive_loss.item() >= 0  # one negative pair
    out.loss.backward()
    assert model.prototype_network.prototypes.grad.abs().sum() > 0
    plain = model(**pixels, labels=labels)  # no observation labels: only the cross-entropy
    assert plain.visual_contrastive_loss is None and plain.label_loss is None and plain.loss is plain.ce_loss


@pytest.mark.parametrize("pooling", ["tokens", "all_positions"])
def test_text_responses_are_averaged_over_real_tokens_or_every_position(pixels, pooling) -> None:
    """σ of the textual L_icn^t: the real tokens (default) or every padded position (the official code)."""
    from hf_rrg.losses import pooled_normalized

    model = tiny_model(text_response_pooling=pooling, contrastive_margin=-1.0).train()
    responses = []
    hook = model.prototype_network.querying.register_forward_hook(lambda m, a, out: responses.append(out))
    labels = torch.tensor([[5, 6, 7, 2, -100], [8, 9, 2, -100, -100]])
    observations = torch.zeros(2, 14)
    observations[0, [1, 4]] = 1.0
    out = model(**pixels, labels=labels, observation_labels=observations)
    hook.remove()
    text = responses[1]  # [0]: the visual tokens, [1]: the word embeddings
    mask = None if pooling == "all_positions" else labels != -100
    expected = xpronet_multilabel_contrastive_loss(text, out.observation_labels, mask=mask, margin=-1.0)
    torch.testing.assert_close(out.text_contrastive_loss, expected)
    f = pooled_normalized(text.detach(), mask)  # margin -1: the negative pair's term is s_01 + 1
    torch.testing.assert_close(out.text_contrastive_loss.detach(), 2 * (f[0] @ f[1] + 1.0) / 4)
    other = pooled_normalized(text.detach(), labels != -100 if mask is None else None)
    assert not torch.allclose(f, other)
    with pytest.raises(ValueError, match="text_response_pooling must be one of"):
        XProNetConfig(text_response_pooling="mean")


def test_labels_choose_the_prototypes(pixels) -> None:
    model = tiny_model()
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 2]])
    a, b = torch.zeros(2, 14), torch.zeros(2, 14)
    a[:, 2], b[:, 7] = 1.0, 1.0
    logits_a = model(**pixels, decoder_input_ids=ids, observation_labels=a).logits
    logits_b = model(**pixels, decoder_input_ids=ids, observation_labels=b).logits
    assert not torch.allclose(logits_a, logits_b)
    predicted = model(**pixels, decoder_input_ids=ids)
    expected = (torch.sigmoid(predicted.observation_logits) >= 0.5).float()
    expected[expected.sum(1) == 0, 13] = 1.0
    assert torch.equal(predicted.observation_labels, expected)
    torch.testing.assert_close(predicted.logits, model(**pixels, decoder_input_ids=ids, observation_labels=expected).logits)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_with_and_without_cache_and_labels(num_beams: int, pixels) -> None:
    model = tiny_model()
    cached = model.generate(**pixels, num_beams=num_beams, use_cache=True)
    assert cached.shape[1] == 1 + 14  # <bos> + max_seq_length new tokens
    assert len(set(cached.flatten().tolist())) >= 3  # not one token repeated in every study
    assert torch.equal(cached, model.generate(**pixels, num_beams=num_beams, use_cache=False))
    # predicted labels, passed explicitly, give the same reports: the labels reach every decoding step
    predicted = model(**pixels, decoder_input_ids=torch.ones(2, 1, dtype=torch.long)).observation_labels
    assert torch.equal(cached, model.generate(**pixels, num_beams=num_beams, observation_labels=predicted))
    other = 1.0 - predicted  # every other class
    with_other = model.generate(**pixels, num_beams=num_beams, observation_labels=other, use_cache=True,
                                output_scores=True, return_dict_in_generate=True)  # fmt: skip
    no_cache = model.generate(**pixels, num_beams=num_beams, observation_labels=other, use_cache=False)
    assert torch.equal(with_other.sequences, no_cache)
    baseline = model.generate(**pixels, num_beams=num_beams, output_scores=True, return_dict_in_generate=True)
    assert not torch.allclose(with_other.scores[0], baseline.scores[0])  # passed labels were used


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_projects_the_prototypes_once_and_matches_recomputing_them(num_beams: int, pixels) -> None:
    """The optimised path (the prototypes' keys/values made once and kept in the decoder cache) against the
    straightforward one (no cache: the prototype projection and keys/values recomputed at every step)."""
    model = tiny_model()
    calls = []
    hook = model.prototype_network.prototype_projection.register_forward_hook(lambda *_: calls.append(1))
    try:
        cached = model.generate(**pixels, num_beams=num_beams, use_cache=True, output_scores=True,
                                return_dict_in_generate=True)  # fmt: skip
        once = len(calls)
        calls.clear()
        recomputed = model.generate(**pixels, num_beams=num_beams, use_cache=False, output_scores=True,
                                    return_dict_in_generate=True)  # fmt: skip
    finally:
        hook.remove()
    steps = cached.sequences.size(1) - 1
    assert once == 2  # the encoder's visual interaction, then the decoder's keys/values for every step
    assert len(calls) == 1 + steps  # the straightforward path: the encoder, then once per step
    assert torch.equal(cached.sequences, recomputed.sequences)
    for step_cached, step_recomputed in zip(cached.scores, recomputed.scores):
        torch.testing.assert_close(step_cached, step_recomputed, rtol=1e-5, atol=1e-5)
    network = model.prototype_network
    words, labels = torch.randn(2, 5, model.config.d_model), torch.tensor([[1.0] * 3 + [0.0] * 11] * 2)
    with torch.no_grad():
        direct = network.interact(words, labels, "text")
        kept = network.interact(words, labels, "text", network.keys_values())
    assert all(torch.equal(a, b) for a, b in zip(direct, kept))


def test_without_the_prototype_network_it_is_a_plain_transformer(pixels) -> None:
    torch.manual_seed(0)
    model = XProNetForConditionalGeneration(XProNetConfig(**TINY, use_prototype_network=False)).eval()
    assert model.prototype_network is None
    assert not any("prototype" in name for name, _ in model.named_parameters())
    out = model(**pixels, labels=torch.tensor([[5, 2], [6, 2]]), observation_labels=torch.ones(2, 14))
    assert out.loss is out.ce_loss and out.observation_labels is None
    assert torch.equal(model.generate(**pixels, use_cache=True), model.generate(**pixels, use_cache=False))
    with pytest.raises(ValueError, match="no prototype network"):
        model.load_prototypes(torch.zeros(14, 4, 112))


def test_save_and_auto_load_round_trip(pixels, tmp_path) -> None:
    AutoConfig.register("xpronet", XProNetConfig, exist_ok=True)
    AutoModel.register(XProNetConfig, XProNetForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(XProNetConfig, XProNetForConditionalGeneration, exist_ok=True)
    model = tiny_model(prototype_weighting="normalized", share_fusion_layer=False)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is XProNetForConditionalGeneration and loaded.config.prototype_weighting == "normalized"
    assert loaded.config.observation_names == model.config.observation_names
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys() and "encoder.prototype_network.prototypes" in state
    assert all(torch.equal(state[name], loaded_state[name]) for name in state)
    assert torch.equal(model.generate(**pixels), loaded.generate(**pixels))
    with pytest.raises(ValueError, match=r"prototype matrix has shape \(14, 2, 112\)"):
        model.load_prototypes(torch.zeros(14, 2, 112))


# ------------------------------------------------------------------------------------------- memorisation


@pytest.mark.slow
def test_tiny_xpronet_memorises_eight_real_reports_from_the_image_alone() -> None:
    """Plain training loop (the Accelerate `fit` does not know XProNet's labels yet); generation uses the label
    head's predictions, no label passed."""
    from hf_rrg import RRGImageProcessor, RRGTokenizer
    from hf_rrg.data import load_builder
    from hf_rrg.metrics import bleu
    from hf_rrg.xpronet.labels import make_label_file

    torch.set_num_threads(2)
    max_len = 16
    train = load_builder("demo")["train"].select(range(8))
    label_file = make_label_file(train, progress=False)
    observations = label_file.tensor(train["id"])
    assert observations.sum(1).min() >= 1
    tokenizer = RRGTokenizer.from_reports(train["report"], cleaner="r2gen_iu_xray", min_count=1)
    processor = RRGImageProcessor(eval_size=(64, 64), max_views=1)
    inputs = processor([[im.convert("RGB").resize((72, 72)) for im in row] for row in train["images"]])
    encoded = tokenizer(list(train["report"]), max_length=max_len, truncation=True, padding=True,
                        return_tensors="pt")  # fmt: skip
    ids, attention = encoded["input_ids"], encoded["attention_mask"]
    targets = ids[:, 1:].masked_fill(attention[:, 1:] == 0, -100)
    torch.manual_seed(0)
    config = XProNetConfig(**{**TINY, "vocab_size": len(tokenizer), "max_seq_length": max_len, "d_model": 64,
                              "num_layers": 1, "d_ff": 128, "dropout": 0.0, "visual_dropout": 0.0, "prototype_top_k": 4}) # fmt: skip
    model = XProNetForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(100):
        out = model(**inputs, observation_labels=observations, decoder_input_ids=ids[:, :-1],
                    decoder_attention_mask=attention[:, :-1], labels=targets)  # fmt: skip
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    model.eval()
    assert out.ce_loss.item() < 0.05 and out.label_loss.item() < 0.05, (out.ce_loss, out.label_loss)
    references = [[tokenizer.normalize_report(r, max_tokens=max_len - 1)] for r in train["report"]]
    for beams in (1, 3):
        generated = model.generate(**inputs, num_beams=beams)  # no observation_labels: the label head's
        predictions = tokenizer.batch_decode(generated, skip_special_tokens=True)
        assert bleu(predictions, references)["bleu_4"] >= 0.9, (beams, predictions, references)
