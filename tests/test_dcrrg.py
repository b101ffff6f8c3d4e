"""DCRRG: L_CSM against Eq. 3-9 by hand, prompts change the projections, the PEFT prefix honoured in forward and
generate (the transformers 5 trap verified), step-4 trainable parameters, adapter round trip, retrieval metrics."""

from __future__ import annotations

import math

import pytest
import torch

from hf_rrg.modeling.configuration_dcrrg import DCRRG_OBSERVATIONS, DCRRGConfig
from hf_rrg.modeling.dcrrg_losses import calibrated_semantic_matching_loss, calibrated_soft_targets
from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration

TINY = dict(
    vocab_size=30, visual_backbone="test_resnet", visual_pretrained=False, projection_dim=16, d_model=32, d_ff=64,
    num_heads=4, max_seq_length=10, text_encoder_config=dict(hidden_size=32, num_attention_heads=4,
    num_hidden_layers=1, intermediate_size=64, max_position_embeddings=64),
)  # fmt: skip


def tiny_model(**overrides) -> DCRRGForConditionalGeneration:
    torch.manual_seed(0)
    return DCRRGForConditionalGeneration(DCRRGConfig(**{**TINY, **overrides})).eval()


# -------------------------------------------------------------------------------------------- Eq. 3-9 by hand


def cos(a, b):
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb) if na and nb else 0.0


def softmax(row):
    e = [math.exp(x) for x in row]
    return [x / sum(e) for x in e]


def test_soft_targets_and_csm_loss_equal_eq_3_to_9_by_hand() -> None:
    torch.manual_seed(3)
    labels_img = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]
    labels_txt = [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    v, t = torch.randn(3, 5), torch.randn(3, 4)  # raw embeddings (Eq. 1a, 2a)
    vp, tp = torch.randn(3, 6), torch.randn(3, 6)  # projections (Eq. 1b, 2b)
    tau = 0.07
    n = 3
    s = [[cos(labels_img[i], labels_txt[j]) for j in range(n)] for i in range(n)]  # Eq. 3
    w = [[cos(t[i].tolist(), t[j].tolist()) / 2 + 0.5 for j in range(n)] for i in range(n)]
    w_hat = [[cos(v[j].tolist(), v[i].tolist()) / 2 + 0.5 for i in range(n)] for j in range(n)]
    y_v2t = [softmax([w[i][j] * s[i][j] for j in range(n)]) for i in range(n)]  # Eq. 4
    y_t2v = [softmax([w_hat[j][i] * s[i][j] for i in range(n)]) for j in range(n)]  # Eq. 5 (s_ji = label cos)
    got_v2t, got_t2v = calibrated_soft_targets(torch.tensor(labels_img), torch.tensor(labels_txt), v, t)
    torch.testing.assert_close(got_v2t, torch.tensor(y_v2t))
    torch.testing.assert_close(got_t2v, torch.tensor(y_t2v))
    s_hat = [[cos(vp[i].tolist(), tp[j].tolist()) for j in range(n)] for i in range(n)]  # Eq. 6
    p_v2t = [softmax([s_hat[i][j] / tau for j in range(n)]) for i in range(n)]  # Eq. 7
    p_t2v = [softmax([s_hat[i][j] / tau for i in range(n)]) for j in range(n)]
    l_v2t = -sum(y_v2t[i][j] * math.log(p_v2t[i][j]) for i in range(n) for j in range(n)) / n  # Eq. 8
    l_t2v = -sum(y_t2v[j][i] * math.log(p_t2v[j][i]) for i in range(n) for j in range(n)) / n
    got = calibrated_semantic_matching_loss(vp, tp, torch.tensor(labels_img), torch.tensor(labels_txt), v, t, tau)
    assert got.item() == pytest.approx((l_v2t + l_t2v) / 2, rel=1e-5)  # Eq. 9
    with pytest.raises(ValueError, match="N paired rows"):
        calibrated_semantic_matching_loss(vp, tp[:2], torch.tensor(labels_img), torch.tensor(labels_txt), v, t)


@pytest.mark.parametrize("detach", [True, False])
def test_soft_targets_are_constants_unless_asked_otherwise(detach: bool) -> None:
    """The calibration weights of Eq. 4-5 read the raw embeddings v, t. Detached (default, MedCLIP-style constant
    targets) the loss cannot move the encoders through its own targets; `detach_targets=False` lets it."""
    torch.manual_seed(4)
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    v, t = torch.randn(3, 5, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    vp, tp = torch.randn(3, 6), torch.randn(3, 6)  # projections held fixed: only the targets could carry a gradient
    loss = calibrated_semantic_matching_loss(vp, tp, labels, labels, v, t, 0.07, detach_targets=detach)
    if detach:
        assert not loss.requires_grad and v.grad is None and t.grad is None
    else:
        loss.backward()
        assert v.grad.abs().sum() > 0 and t.grad.abs().sum() > 0
    assert calibrated_semantic_matching_loss(vp, tp, labels, labels, v, t, 0.07).requires_grad is False  # default
    model = tiny_model(detach_soft_targets=detach)  # the model's switch, read by DCCLIP's matching_loss
    v2, t2 = v.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    through_model = model.dcclip.matching_loss(vp, tp, labels, labels, v2, t2)
    expected = calibrated_semantic_matching_loss(vp, tp, labels, labels, v.detach(), t.detach(), 0.07)
    torch.testing.assert_close(through_model.detach(), expected)
    through_model.backward()  # τ is learnable, so the loss always has a graph
    assert (v2.grad is None) is detach and (t2.grad is None) is detach


# -------------------------------------------------------------------------------------------- prompts


def test_prompts_change_the_projections_one_hot_per_observation() -> None:
    model = tiny_model()
    dcclip = model.dcclip
    assert dcclip.temperature.item() == pytest.approx(0.07)
    v = torch.randn(2, dcclip.visual_extractor.num_features)
    prompts = torch.arange(15).expand(2, -1)  # 14 observations + the zero prompt
    projected = dcclip.project_image(v, prompts)
    linear = dcclip.image_projection.linear
    d = v.size(1)
    for k in range(14):  # f_v(concat(v, e_k)) = W_v v + W_e[:, k] + b
        expected = v @ linear.weight[:, :d].T + linear.weight[:, d + k] + linear.bias
        torch.testing.assert_close(projected[:, k], expected)
    torch.testing.assert_close(projected[:, 14], v @ linear.weight[:, :d].T + linear.bias)
    assert len({tuple(projected[0, k].round(decimals=4).tolist()) for k in range(15)}) == 15
    with pytest.raises(ValueError, match=r"prompt ids must lie in \[0, 14\]"):
        dcclip.project_image(v, torch.full((2, 1), 15))
    config = DCRRGConfig()
    assert config.observation_names == list(DCRRG_OBSERVATIONS) and config.num_layers == 2
    assert (config.visual_backbone, config.temperature_init, config.text_encoder_config["num_attention_heads"],
            config.text_encoder_config["hidden_size"], config.use_positional_encoding) == ("resnet50", 0.07, 8, 512, False)  # fmt: skip


def test_description_mode_uses_one_memory_token_and_full_mode_all_observations() -> None:
    model = tiny_model()
    pixels = torch.randn(2, 1, 3, 64, 64)
    ids = torch.tensor([[1, 5, 6], [1, 7, 8]])
    full = model(pixel_values=pixels, decoder_input_ids=ids)
    one = model(pixel_values=pixels, decoder_input_ids=ids, observation_ids=torch.tensor([[2], [9]]))
    assert full.encoder_last_hidden_state.shape == (2, 14, 32) and one.encoder_last_hidden_state.shape == (2, 1, 32)
    assert not torch.allclose(full.logits, one.logits)
    probs = model.observation_probabilities(pixels)
    assert probs.shape == (2, 14) and torch.all((probs > 0) & (probs < 1))
    text = model(text_input_ids=torch.tensor([[2, 5, 6, 3]] * 2), decoder_input_ids=ids,
                 observation_ids=torch.tensor([[2], [9]]))  # fmt: skip
    assert text.logits.shape == one.logits.shape and not torch.allclose(text.logits, one.logits)
    generated = model.generate(pixel_values=pixels, observation_ids=torch.tensor([[2], [9]]), num_beams=3)
    assert torch.equal(generated, model.generate(pixel_values=pixels, observation_ids=torch.tensor([[2], [9]]),
                                                 num_beams=3, use_cache=False))  # fmt: skip


# -------------------------------------------------------------------------------------------- PEFT prefix


def test_peft_prefix_is_honoured_in_forward_and_generate() -> None:
    from hf_rrg.dcrrg.prefix import add_prefix_adapter, bos_prompt, generate_with_adapter

    model = tiny_model()
    peft_model = add_prefix_adapter(model, num_virtual_tokens=4, encoder_hidden_size=8, seed=1).eval()
    pixels = torch.randn(2, 1, 3, 64, 64)
    bos = bos_prompt(peft_model, 2)
    # the trap, verified: at the first generation step the model gets generate's own cache AND PEFT's prefix
    seen = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((type(kwargs.get("cache")).__name__,
                                                  type(kwargs.get("past_key_values")).__name__)), with_kwargs=True)  # fmt: skip
    with torch.no_grad():
        generated = generate_with_adapter(peft_model, pixels, num_beams=1, output_logits=True,
                                          return_dict_in_generate=True)  # fmt: skip
    hook.remove()
    assert all(entry == ("RRGDecoderCache", "DynamicCache") for entry in seen)  # the model uses the prefix once
    with torch.no_grad():
        forced = peft_model(pixel_values=pixels, input_ids=bos).logits[:, 0]
        torch.testing.assert_close(generated.logits[0], forced, atol=1e-5, rtol=1e-5)
        with peft_model.disable_adapter():
            plain = peft_model(pixel_values=pixels, input_ids=bos).logits[:, 0]
        assert not torch.allclose(plain, forced, atol=1e-3)
        # teacher forcing the generated report reproduces every step's logits (the prefix stays in the cache)
        sequence = generated.sequences
        forced_all = peft_model(pixel_values=pixels, input_ids=sequence[:, :-1]).logits
        torch.testing.assert_close(torch.stack(generated.logits, 1), forced_all, atol=1e-4, rtol=1e-4)
        beam = generate_with_adapter(peft_model, pixels, num_beams=3)
        assert torch.equal(beam, generate_with_adapter(peft_model, pixels, num_beams=3, use_cache=False))


def test_step4_trains_only_the_prefix_and_the_head() -> None:
    from hf_rrg.dcrrg.prefix import add_prefix_adapter, count_trainable

    model = tiny_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    peft_model = add_prefix_adapter(model, num_virtual_tokens=4, encoder_hidden_size=8)
    prefix = 4 * 32 + (32 * 8 + 8) + (8 * 2 * 2 * 32 + 2 * 2 * 32)  # embedding + MLP (P-Tuning v2 reparam.)
    head = 32 * 30 + 30
    assert count_trainable(peft_model) == prefix + head
    trainable = sorted(n for n, p in peft_model.named_parameters() if p.requires_grad)
    assert all(n.startswith("prompt_encoder.") or ".lm_head.modules_to_save." in n for n in trainable)
    loss = peft_model(pixel_values=torch.randn(2, 1, 3, 64, 64), input_ids=torch.tensor([[1, 5, 6]] * 2),
                      labels=torch.tensor([[5, 6, 2]] * 2)).loss  # fmt: skip
    loss.backward()
    torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0).step()
    after = dict(peft_model.get_base_model().named_parameters())
    for name, value in before.items():  # the frozen model is untouched (the head is re-initialised, §3.4)
        if not name.startswith("lm_head."):
            assert torch.equal(after[name], value), name
    assert not torch.equal(after["lm_head.original_module.weight"], before["lm_head.weight"])


def test_adapter_round_trip_and_merge(tmp_path) -> None:
    from peft import PeftModel

    from hf_rrg.dcrrg.prefix import add_prefix_adapter, generate_with_adapter, merge_prefix

    model = tiny_model()
    peft_model = add_prefix_adapter(model, num_virtual_tokens=4, encoder_hidden_size=8, seed=2).eval()
    pixels = torch.randn(2, 1, 3, 64, 64)
    expected = generate_with_adapter(peft_model, pixels)
    peft_model.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    loaded = PeftModel.from_pretrained(tiny_model(), tmp_path / "adapter").eval()
    assert torch.equal(generate_with_adapter(loaded, pixels), expected)
    merged = merge_prefix(peft_model)
    assert merged.config.prefix_length == 4 and torch.equal(merged.generate(pixel_values=pixels), expected)
    merged.save_pretrained(tmp_path / "merged")
    again = DCRRGForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    assert torch.equal(again.generate(pixel_values=pixels), expected)


# -------------------------------------------------------------------------------------------- retrieval


def test_one_auroc_rank_based_with_ties_equals_the_pairwise_formula() -> None:
    """DCRRG's per-observation AUROC is the metrics package's rank-based one (O(n log n), ties at their average
    rank), equal to the pairwise Mann-Whitney definition written out here, with ties and excluded labels."""
    import random

    from hf_rrg.dcrrg import retrieval
    from hf_rrg.metrics.clinical import auroc

    assert getattr(retrieval, "auroc", auroc) is auroc  # one implementation: `hf_rrg.metrics.clinical.auroc`
    rng = random.Random(7)
    n, names = 300, ["A", "B", "C"]
    scores = torch.tensor([[rng.choice([0.05, 0.2, 0.2, 0.5, 0.9]) for _ in names] for _ in range(n)])
    labels = torch.tensor([[rng.choice([0, 0, 1, -100]) for _ in names] for _ in range(n)])
    labels[:, 2] = torch.where(labels[:, 2] == 1, 0, labels[:, 2])  # C: no positive, AUROC undefined
    result = retrieval.observation_auroc(scores, labels, names)
    for k, name in enumerate(names[:2]):
        pos = [float(scores[i, k]) for i in range(n) if labels[i, k] == 1]
        neg = [float(scores[i, k]) for i in range(n) if labels[i, k] == 0]
        assert len(pos) > 20 and len(neg) > 20 and set(pos) & set(neg)  # many ties across the classes
        pairwise = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
        assert result[name] == pytest.approx(pairwise, abs=1e-12)
        assert auroc(scores[:, k][labels[:, k] != -100].numpy(), labels[:, k][labels[:, k] != -100].numpy()) == (
            pytest.approx(pairwise, abs=1e-12))  # fmt: skip
    assert math.isnan(result["C"]) and result["Average AUROC"] == pytest.approx((result["A"] + result["B"]) / 2)


def test_precision_at_k_and_auroc_by_hand() -> None:
    from hf_rrg.dcrrg.retrieval import five_by_n_set, observation_auroc, precision_at_k
    from hf_rrg.metrics.clinical import auroc

    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0]])
    got = precision_at_k(images, texts, [0, 1], [0, 1, 1], ks=(1, 2))
    # image 0: top1 text 1 (cos 1.0, class 1) -> 0; top2 texts 1, 0 -> 1/2. image 1: top1 text 2 -> 1; top2 2, 0 -> 1/2
    assert got == {"P@1": 0.5, "P@2": 0.5}
    assert auroc([0.9, 0.2, 0.6, 0.6], [1, 0, 1, 0]) == pytest.approx((2 + 1 + 0.5) / 4)
    labels = torch.tensor([[1, 0], [0, 1], [1, -100], [0, 0]])
    result = observation_auroc(torch.tensor([[0.8, 0.1], [0.3, 0.9], [0.7, 0.5], [0.1, 0.2]]), labels, ["A", "B"])
    assert result["A"] == 1.0 and result["B"] == 1.0 and result["Average AUROC"] == 1.0
    names = list(DCRRG_OBSERVATIONS)
    rows = torch.zeros(4, 14, dtype=torch.long)
    rows[0, names.index("Edema")] = 1
    rows[1, names.index("Edema")] = rows[1, names.index("Atelectasis")] = 1  # two of the five: left out
    rows[2, names.index("Atelectasis")] = 1
    assert five_by_n_set(rows, names) == ([0, 2], [3, 0])


@pytest.mark.parametrize("name", ["dcrrg_mimic_cxr", "dcrrg_iu_xray", "dcrrg_demo"])
def test_shipped_configs_are_valid_and_options_checked(name) -> None:
    from hf_rrg.dcrrg.recipe import recipe_options
    from hf_rrg.training.config import ConfigError, load_config

    config = load_config(name)
    options = recipe_options(config)
    model = DCRRGConfig(**config.model)
    assert options.finetuning == "prompt" and model.num_layers == 2 and config.generation.num_beams == 3
    if name != "dcrrg_demo":
        assert (options.lr, options.weight_decay, options.pretrain_batch_size, options.decoder_batch_size) == (
            1e-4, 1e-6, 32, 16)  # Appendix A  # fmt: skip
    with pytest.raises(ConfigError, match="needs step 3"):
        recipe_options(load_config(name, ["recipe_options.run_step3=false"]))
    with pytest.raises(ConfigError, match="unknown config key"):
        recipe_options(load_config(name, ["recipe_options.balance=true"]))
    assert recipe_options(load_config(name, ["recipe_options.run_step3=false",
                                             "recipe_options.finetuning=full"])).finetuning == "full"  # fmt: skip


def test_forward_reports_the_step1_cross_entropy_of_the_heads() -> None:
    model = tiny_model()
    pixels = torch.randn(2, 1, 3, 64, 64)
    prompts, labels = torch.tensor([[2, 5], [9, 13]]), torch.tensor([[1, 0], [-100, 1]])
    out = model(pixel_values=pixels, observation_ids=prompts, decoder_input_ids=torch.tensor([[1], [1]]),
                observation_labels=labels)  # fmt: skip
    logits = out.observation_logits
    expected = -(torch.log_softmax(logits[0, 0], -1)[1] + torch.log_softmax(logits[0, 1], -1)[0]
                 + torch.log_softmax(logits[1, 1], -1)[1]) / 3  # the uncertain instance is excluded  # fmt: skip
    torch.testing.assert_close(out.observation_loss, expected)


def test_inspect_encodes_the_study_once_per_model_and_matches_the_per_prompt_calls() -> None:
    """`dcrrg inspect`: the CNN reads the study once per model (not once more per observation prompt); the
    probabilities, the 14 descriptions and the report equal those of the plain per-prompt calls."""
    from PIL import Image

    from hf_rrg.dcrrg.commands import inspect_study
    from hf_rrg.modeling import RRGImageProcessor, RRGProcessor, RRGTokenizer

    model, describe = tiny_model(), tiny_model()
    with torch.no_grad():  # the step-2 model is another model: its own CNN weights
        for parameter in describe.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    tokenizer = RRGTokenizer.from_reports(["heart size normal .", "no effusion ."], min_count=1)
    processor = RRGProcessor(RRGImageProcessor(eval_size=(32, 32), max_views=1), tokenizer)
    pixels = (torch.arange(32 * 32 * 3) % 251).reshape(32, 32, 3).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    batches_read: dict[str, list[int]] = {"model": [], "describe": []}  # the images of each CNN call
    for name, net in (("model", model), ("describe", describe)):
        net.encoder.visual_extractor.register_forward_hook(
            lambda module, args, out, seen=batches_read[name]: seen.append(args[0].size(0))
        )
    result = inspect_study(model, processor, [image], describe_model=describe, num_beams=2)
    assert batches_read == {"model": [1], "describe": [1]}

    inputs = processor(images=[[image]])
    names = model.config.observation_names
    with torch.no_grad():
        probabilities = model.observation_probabilities(**inputs)[0].tolist()
        repeated = {key: value.expand(len(names), *value.shape[1:]) for key, value in inputs.items()}
        descriptions = describe.generate(**repeated, observation_ids=torch.arange(len(names)).unsqueeze(1),
                                         num_beams=2, max_length=describe.config.description_max_length)  # fmt: skip
        report = model.generate(**inputs, num_beams=2)
    assert [row["observation"] for row in result["observations"]] == list(names)
    assert [row["probability"] for row in result["observations"]] == pytest.approx(probabilities, abs=1e-4)
    assert [row["description"] for row in result["observations"]] == processor.batch_decode(
        descriptions, skip_special_tokens=True
    )
    assert result["report"] == processor.batch_decode(report, skip_special_tokens=True)[0]
