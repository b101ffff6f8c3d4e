"""R2Gen and R2GenCMN: building blocks against their equations, loss, cache, masks, save/load, Auto classes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

import hf_rrg  # noqa: F401  (registers the Auto classes)
from hf_rrg import (
    R2GenCMNConfig,
    R2GenCMNForConditionalGeneration,
    R2GenConfig,
    R2GenForConditionalGeneration,
    RRGImageProcessor,
)
from hf_rrg.modeling.memory_modules import ConditionalLayerNorm, CrossModalMemory, RelationalMemory, top_k_attention
from hf_rrg.modeling.transformer_layers import StdLayerNorm, causal_mask

TINY = dict(
    vocab_size=40, visual_backbone="test_resnet", visual_pretrained=False, d_model=32, d_ff=64, num_heads=4,
    num_layers=2, max_seq_length=14,
)  # fmt: skip


def tiny_model(kind: str) -> R2GenForConditionalGeneration | R2GenCMNForConditionalGeneration:
    """A small random model whose `<eos>` logit is pushed down, so that generations run to full length."""
    torch.manual_seed(0)
    if kind == "r2gen":
        model = R2GenForConditionalGeneration(R2GenConfig(rm_d_model=32, rm_num_heads=4, **TINY))
    else:
        model = R2GenCMNForConditionalGeneration(R2GenCMNConfig(cmm_size=64, cmm_dim=32, topk=8, **TINY))
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] = -20.0
    return model.eval()


@pytest.fixture(scope="module")
def pixels(shared_data) -> dict[str, torch.Tensor]:
    images = shared_data / "misc_cxr_images"
    studies = [[images / "00000001_000.png", images / "h0001.png"], [images / "16747_3_1.jpg"]]
    return dict(RRGImageProcessor(eval_size=(64, 64), max_views=2)([[str(p) for p in s] for s in studies]))


def test_std_layer_norm_uses_unbiased_std_plus_eps() -> None:
    norm = StdLayerNorm(5, eps=1e-6)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0]))
        norm.beta.copy_(torch.tensor([0.0, 1.0, 0.0, -1.0, 0.5]))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0]])
    mean, std = x.mean(), math.sqrt(((x - x.mean()) ** 2).sum().item() / 4)  # n - 1 = 4
    expected = norm.gamma * (x - mean) / (std + 1e-6) + norm.beta
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-6)


def test_conditional_layer_norm_shifts_gain_and_bias_by_the_memory() -> None:
    torch.manual_seed(1)
    norm = ConditionalLayerNorm(d_model=6, condition_size=12)
    x, memory = torch.randn(2, 3, 6), torch.randn(2, 3, 12)
    gamma = norm.gamma + norm.mlp_gamma[2](torch.relu(norm.mlp_gamma[0](memory)))
    beta = norm.beta + norm.mlp_beta[2](torch.relu(norm.mlp_beta[0](memory)))
    expected = gamma * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6) + beta
    torch.testing.assert_close(norm(x, memory), expected)


def test_relational_memory_step_follows_the_gated_update() -> None:
    torch.manual_seed(2)
    memory_module = RelationalMemory(num_slots=3, d_model=8, num_heads=2, dropout=0.0).eval()
    token, memory = torch.randn(4, 8), torch.randn(4, 24)
    M = memory.view(4, 3, 8)
    keys = torch.cat([M, token[:, None]], dim=1)  # attention over [M; y]
    attn = memory_module.attn

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(4, -1, 2, 4).transpose(1, 2)

    q, k, v = heads(attn.q_proj(M)), heads(attn.k_proj(keys)), heads(attn.v_proj(keys))
    z = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
    z = attn.out_proj(z.transpose(1, 2).reshape(4, 3, 8))
    candidate = M + z
    candidate = candidate + memory_module.mlp(candidate)
    gates = memory_module.W(token)[:, None] + memory_module.U(torch.tanh(M))
    input_gate, forget_gate = torch.sigmoid(gates[..., :8]), torch.sigmoid(gates[..., 8:])
    expected = input_gate * torch.tanh(candidate) + forget_gate * M
    torch.testing.assert_close(memory_module.step(token, memory), expected.reshape(4, 24))
    initial = memory_module.initial_state(2, token).view(2, 3, 8)
    assert torch.equal(initial[0], torch.eye(3, 8))


def test_top_k_attention_matches_a_brute_force_loop() -> None:
    torch.manual_seed(3)
    query, key, value = torch.randn(2, 2, 5, 4), torch.randn(1, 2, 16, 4), torch.randn(1, 2, 16, 4)
    out = top_k_attention(query, key, value, None, torch.nn.Identity(), k=3)
    expected = torch.empty_like(out)
    for b in range(2):
        for h in range(2):
            for i in range(5):
                scores = key[0, h] @ query[b, h, i] / 2.0
                best = scores.topk(3).indices
                expected[b, h, i] = torch.softmax(scores[best], dim=0) @ value[0, h, best]
    torch.testing.assert_close(out, expected)


def test_cross_modal_memory_initialisation() -> None:
    torch.manual_seed(4)
    memory = CrossModalMemory(memory_size=2048, d_model=512, num_heads=8, top_k=32).eval()
    assert memory.matrix.shape == (2048, 512)
    assert abs(memory.matrix.std().item() - 1 / 512) < 1e-4  # N(0, 1/512) as R2GenCMN
    features = torch.randn(2, 3, 512)
    responses, projected = memory(features)
    assert responses.shape == (2, 3, 512)
    # the projected matrix is reusable (what the decoder cache keeps between steps)
    torch.testing.assert_close(memory(features, projected)[0], responses)


def test_causal_mask_with_past_and_padding() -> None:
    padding = torch.tensor([[1, 1, 1, 0]])
    mask = causal_mask(query_length=2, past_length=2, key_padding=padding, device=torch.device("cpu"))
    assert mask.tolist() == [[[True, True, True, False], [True, True, True, False]]]
    assert causal_mask(3, 0, None, torch.device("cpu"))[0].tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]


def test_default_configs_are_the_papers() -> None:
    r2gen, cmn = R2GenConfig(), R2GenCMNConfig()
    assert (r2gen.visual_backbone, r2gen.d_model, r2gen.d_ff, r2gen.num_layers, r2gen.num_heads) == (
        "resnet101", 512, 512, 3, 8,
    )  # fmt: skip
    assert (r2gen.dropout, r2gen.visual_dropout, r2gen.rm_num_slots, r2gen.rm_num_heads) == (0.1, 0.5, 3, 8)
    assert (cmn.cmm_size, cmn.cmm_dim, cmn.topk, cmn.max_seq_length) == (2048, 512, 32, 60)
    with pytest.raises(ValueError, match="rm_d_model .* must equal d_model"):
        R2GenConfig(rm_d_model=256)


@pytest.mark.parametrize("kind", ["r2gen", "r2gencmn"])
def test_loss_is_the_token_cross_entropy(kind: str, pixels) -> None:
    model = tiny_model(kind)
    labels = torch.tensor([[5, 6, 7, 2, -100], [8, 9, 2, -100, -100]])
    output = model(**pixels, labels=labels)
    decoder_input_ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    again = model(**pixels, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(output.logits, again.logits)
    log_probs = F.log_softmax(output.logits, dim=-1)
    kept = labels != -100
    expected = -log_probs[kept].gather(1, labels[kept][:, None]).mean()
    torch.testing.assert_close(output.loss, expected)


@pytest.mark.parametrize("kind", ["r2gen", "r2gencmn"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_with_and_without_cache_is_identical(kind: str, num_beams: int, pixels) -> None:
    model = tiny_model(kind)
    cached = model.generate(**pixels, num_beams=num_beams, use_cache=True)
    recomputed = model.generate(**pixels, num_beams=num_beams, use_cache=False)
    assert cached.shape[1] == 1 + 14  # <bos> + max_seq_length new tokens: every step of the cache is exercised
    assert len(set(cached[0].tolist())) > 3  # not one token repeated
    assert torch.equal(cached, recomputed)
    assert model.generation_config.num_beams == 3 and model.generation_config.max_new_tokens == 14


@pytest.mark.parametrize("kind", ["r2gen", "r2gencmn"])
def test_missing_views_are_masked_out(kind: str, pixels) -> None:
    """A one-view study padded to two views generates exactly as the same study given alone."""
    model = tiny_model(kind)
    single = {"pixel_values": pixels["pixel_values"][1:, :1], "view_mask": pixels["view_mask"][1:, :1]}
    padded = {"pixel_values": pixels["pixel_values"][1:], "view_mask": pixels["view_mask"][1:]}
    assert padded["view_mask"].tolist() == [[True, False]]
    torch.testing.assert_close(model(**single, labels=torch.tensor([[5, 6, 2]])).logits,
                               model(**padded, labels=torch.tensor([[5, 6, 2]])).logits)  # fmt: skip
    assert torch.equal(model.generate(**single, num_beams=3), model.generate(**padded, num_beams=3))


def test_bad_inputs_fail_clearly(pixels) -> None:
    model = tiny_model("r2gencmn")
    with pytest.raises(ValueError, match=r"Studies \[0\] of the batch have no view"):
        model(pixel_values=pixels["pixel_values"][:1], view_mask=torch.tensor([[False, False]]),
              labels=torch.tensor([[5, 2]]))  # fmt: skip
    with pytest.raises(ValueError, match="pixel_values must be"):
        model(pixel_values=torch.zeros(3, 64, 64), labels=torch.tensor([[5, 2]]))
    with pytest.raises(ValueError, match="Pass `decoder_input_ids` or `labels`"):
        model(**pixels)


@pytest.mark.parametrize("kind", ["r2gen", "r2gencmn"])
def test_save_and_auto_load_give_the_same_generation(kind: str, pixels, tmp_path) -> None:
    model = tiny_model(kind)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "generation_config.json").is_file()
    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert type(AutoModel.from_pretrained(tmp_path)) is type(model)
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[name], loaded_state[name]) for name in state)
    assert torch.equal(model.generate(**pixels), loaded.generate(**pixels))


def test_pretrained_backbone_fails_clearly_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_model("r2gencmn")
    model.encoder.visual_extractor.backbone_name = "resnet18"  # has pretrained weights on the Hub, none cached
    with pytest.raises(RuntimeError, match="Could not fetch pretrained weights for timm backbone 'resnet18'"):
        model.load_pretrained_backbone()
