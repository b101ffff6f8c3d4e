"""`hf-rrg convert`: official-layout checkpoints made from our own models (key names as in the official repositories,
official vocabulary layout), saved with `torch.save`, convert back to the same weights, logits and beam-3 reports;
bad checkpoints are refused naming what is wrong; the converted folder generates from the CLI and loads as remote
code without hf_rrg; the official vocabulary of the real IU X-Ray annotation file."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml

import hf_rrg  # noqa: F401  (registers the Auto classes)
from hf_rrg import (
    R2GenCMNConfig,
    R2GenCMNForConditionalGeneration,
    R2GenConfig,
    R2GenForConditionalGeneration,
    RRGImageProcessor,
    XProNetConfig,
    XProNetForConditionalGeneration,
)
from hf_rrg.cli import main
from hf_rrg.convert import (
    VocabularyMap,
    convert,
    key_map_for,
    load_official_checkpoint,
    official_tokens,
    ours_to_official,
    tokenizer_for,
)
from hf_rrg.convert.vocabulary import check_vocabulary_size
from hf_rrg.hub.model_card import read_front_matter
from hf_rrg.modeling.configuration_ithn import ITHNConfig
from hf_rrg.modeling.modeling_ithn import ITHNForConditionalGeneration

from test_hub_fixtures import run_without_hf_rrg

CLEANER, THRESHOLD, MAX_LEN, LAYERS = "r2gen_iu_xray", 3, 12, 2
SMALL = dict(visual_backbone="resnet18", visual_pretrained=False, d_model=32, d_ff=64, num_heads=4,
             num_layers=LAYERS, max_seq_length=MAX_LEN)  # fmt: skip
# What a tiny model needs beyond the shipped config and what the tensors tell.
SETS = ["model.visual_backbone=resnet18", "model.num_heads=4", f"model.max_seq_length={MAX_LEN}",
        "image_processor.eval_size=64"]  # fmt: skip
ED, M = "encoder_decoder", "encoder_decoder.model"
WB = ("weight", "bias")


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def annotation(shared_data, tmp_path_factory) -> Path:
    """A small R2Gen-style annotation file made of the first 120 real IU X-Ray training reports."""
    real = json.loads((shared_data / "iu_xray" / "annotation.json").read_text(encoding="utf-8"))
    small = {"train": real["train"][:120], "val": real["val"][:4], "    ": real["    "][:4]}
    path = tmp_path_factory.mktemp("annotation") / "annotation.json"
    path.write_text(json.dumps(small), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokens(annotation) -> list[str]:
    reports = [entry["report"] for entry in json.loads(annotation.read_text())["train"]]
    return official_tokens(reports, CLEANER, THRESHOLD)


@pytest.fixture(scope="module")
def pixels(shared_data) -> dict[str, torch.Tensor]:
    images = shared_data / "misc_cxr_images"
    studies = [[images / "00000001_000.png", images / "tb0005.png"], [images / "16747_3_1.jpg"]]
    return dict(RRGImageProcessor(eval_size=(64, 64), max_views=2)([[str(p) for p in s] for s in studies]))


CASES = {
    # case: (method given to convert, extra --set, build our model)
    "r2gen": ("r2gen", ["model.rm_num_heads=4"],
              lambda v: R2GenForConditionalGeneration(R2GenConfig(vocab_size=v, rm_d_model=32, rm_num_heads=4,
                                                                  **SMALL))),
    "r2gencmn": ("r2gencmn", ["model.topk=4"],
                 lambda v: R2GenCMNForConditionalGeneration(R2GenCMNConfig(vocab_size=v, cmm_size=16, cmm_dim=32,
                                                                           topk=4, **SMALL))),
    "xpronet": ("xpronet", ["model.prototype_visual_dim=8", "model.prototype_text_dim=8", "model.prototype_top_k=3",
                            "model.prototype_num_heads=4"],
                lambda v: XProNetForConditionalGeneration(XProNetConfig(
                    vocab_size=v, num_prototypes_per_class=2, prototype_visual_dim=8, prototype_text_dim=8,
                    prototype_top_k=3, prototype_num_heads=4, share_fusion_layer=False, **SMALL))),
    "ithn": ("ithn", [f"model.backbone_config.{s.split('.', 1)[1]}" for s in SETS[:3]] + [
        "model.backbone_config.topk=4", "model.embed_dim=16", "image_processor.eval_size=64"],
        lambda v: ITHNForConditionalGeneration(ITHNConfig.from_preset("official", backbone_config=dict(
            model_type="r2gencmn", cmm_size=16, cmm_dim=32, topk=4, **SMALL), vocab_size=v, embed_dim=16))),
    "ithn_xpronet": ("ithn", [f"model.backbone_config.{s.split('.', 1)[1]}" for s in SETS[:3]] + [
        "model.backbone_config.prototype_visual_dim=8", "model.backbone_config.prototype_text_dim=8",
        "model.backbone_config.prototype_top_k=3", "model.backbone_config.prototype_num_heads=4",
        "model.embed_dim=16", "image_processor.eval_size=64"],
        lambda v: ITHNForConditionalGeneration(ITHNConfig.from_preset("official", backbone_config=dict(
            model_type="xpronet", num_prototypes_per_class=2, prototype_visual_dim=8, prototype_text_dim=8,
            prototype_top_k=3, prototype_num_heads=4, share_fusion_layer=False, **SMALL), vocab_size=v,
            embed_dim=16))),
}  # fmt: skip


def tiny(case: str, vocab_size: int):
    torch.manual_seed(3)
    return CASES[case][2](vocab_size).eval()


def backbone_of(model):
    return model.backbone if model.config.model_type == "ithn" else model


def as_converted(model, vocab: VocabularyMap):
    """`model` with the few tensors conversion defines rather than copies, set as the converter sets them (written
    out here): official id 0 feeds `<bos>`, `<eos>` and `<pad>` embeddings; the `<pad>`/`<bos>` output rows are a
    zero weight and a bias of -10000; XProNet's label head (not official) is zero weights and bias -10; ITHN's
    projection biases (not official) are zeros."""
    state = {key: value.clone() for key, value in model.state_dict().items()}
    prefix = "backbone." if model.config.model_type == "ithn" else ""
    embed, pad, bos, eos = state[prefix + "decoder.embed_tokens.lut.weight"], vocab.pad_token_id, vocab.bos_token_id, \
        vocab.eos_token_id  # fmt: skip
    embed[eos], embed[pad] = embed[bos], embed[bos]
    for name, value in (("weight", 0.0), ("bias", -1.0e4)):
        state[prefix + f"lm_head.{name}"][[pad, bos]] = value
    if prefix + "encoder.prototype_network.label_head.bias" in state:
        state[prefix + "encoder.prototype_network.label_head.weight"].zero_()
        state[prefix + "encoder.prototype_network.label_head.bias"].fill_(-10.0)
    for key in state:
        if key.startswith("ithn_head.") and key.endswith(".bias"):
            state[key].zero_()
    expected = type(model)(model.config).eval()
    expected.load_state_dict(state)
    expected.generation_config = model.generation_config
    return expected


# ------------------------------------------------------------------------------------ the official layouts
def official_visual_keys() -> set[str]:
    """torchvision's ResNet-18 without avgpool/fc as `visual_extractor.model.<child index>` (0 conv1, 1 bn1,
    4-7 layer1-4), what the official VisualExtractor saves."""
    index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    keys = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="").state_dict()
    return {f"visual_extractor.model.{index[k.split('.', 1)[0]]}.{k.split('.', 1)[1]}" for k in keys}


def official_keys(case: str) -> set[str]:
    """The key set of the official model of `case` (R2Gen `modules/encoder_decoder.py`, R2GenCMN
    `modules/base_cmn.py`, XProNet `modules/encoder_decoder.py`, ITHN `models/models.py`), written out."""
    norm = ("gamma", "beta") if case == "r2gen" else ("a_2", "b_2")
    keys = official_visual_keys() | {f"{ED}.att_embed.0.{p}" for p in WB} | {f"{ED}.logit.{p}" for p in WB}
    keys |= {f"{M}.tgt_embed.0.lut.weight", f"{M}.tgt_embed.1.pe"}
    for side, attentions, sublayers in (("encoder", ("self_attn",), 2), ("decoder", ("self_attn", "src_attn"), 3)):
        keys |= {f"{M}.{side}.norm.{n}" for n in norm}
        for i in range(LAYERS):
            layer = f"{M}.{side}.layers.{i}"
            keys |= {f"{layer}.{a}.linears.{j}.{p}" for a in attentions for j in range(4) for p in WB}
            keys |= {f"{layer}.feed_forward.{w}.{p}" for w in ("w_1", "w_2") for p in WB}
            keys |= {f"{layer}.sublayer.{j}.norm.{n}" for j in range(sublayers) for n in norm}
            if case == "r2gen" and side == "decoder":
                keys |= {f"{layer}.sublayer.{j}.norm.{mlp}.{k}.{p}" for j in range(3)
                         for mlp in ("mlp_gamma", "mlp_beta") for k in (0, 2) for p in WB}  # fmt: skip
    if case == "r2gen":
        keys |= {f"{M}.rm.attn.linears.{j}.{p}" for j in range(4) for p in WB}
        keys |= {f"{M}.rm.{name}.{p}" for name in ("mlp.0", "mlp.2", "W", "U") for p in WB}
        return keys
    keys |= {f"{M}.src_embed.0.pe"} | {f"{prefix}.cmn.linears.{j}.{p}" for prefix in (ED, M) for j in range(4)
                                       for p in WB}  # fmt: skip
    if case in ("xpronet", "ithn_xpronet"):
        keys |= {f"{ED}.protypes"} | {f"{x}.{p}" for x in (f"{ED}.dim_reduction", f"{ED}.fuse_feature",
                                                            f"{M}.fuse_feature") for p in WB}  # fmt: skip
    else:
        keys |= {f"{ED}.memory_matrix"}
    if case.startswith("ithn"):
        keys |= {"img_projection.linear1.weight", "text_projection.linear1.weight", "temp_1", "temp_3"}
    return keys


def save_trainer_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    """What the official trainers save: epoch, state_dict, optimizer state, monitor_best."""
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                 "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.98), "params": [0]}]}  # fmt: skip
    torch.save({"epoch": 17, "state_dict": state, "optimizer": optimizer, "monitor_best": 0.1432}, path)
    return path


def official_checkpoint(case: str, tokens: list[str], path: Path):
    """(our model, its vocabulary map, the official-layout checkpoint file)."""
    tokenizer = tokenizer_for(tokens, CLEANER, THRESHOLD)
    model = tiny(case, len(tokenizer))
    vocab = VocabularyMap.build(tokens, tokenizer)
    state = ours_to_official(model, key_map_for(model), vocab)
    return model, vocab, save_trainer_checkpoint(state, path)


def official_decode(ids: list[int], vocab: VocabularyMap, tokens: list[str]) -> str:
    """The official tokenizer's decode: official ids until the first 0, joined by spaces."""
    words = []
    for our_id in ids[1:]:
        official = 0 if our_id == vocab.eos_token_id else int(vocab.official_of_ours[our_id])
        if official == 0:
            break
        words.append(tokens[official - 1])
    return " ".join(words)


# ------------------------------------------------------------------------------------------------ the round trip
@pytest.mark.parametrize("case", list(CASES))
def test_official_checkpoint_converts_to_the_same_model(case, tokens, annotation, pixels, tmp_path) -> None:
    model, vocab, path = official_checkpoint(case, tokens, tmp_path / "model_iu_xray.pth")
    official = load_official_checkpoint(path).state_dict
    assert set(official) == official_keys(case)
    assert official[f"{ED}.logit.weight"].shape[0] == len(tokens) + 1  # id 0 + the official tokens
    method, sets = CASES[case][0], CASES[case][1]
    converted = convert(method, path, annotation, overrides=sets if case.startswith("ithn") else SETS + sets).model

    # every tensor is the original's, except the ones conversion defines (set here as written in as_converted)
    expected = as_converted(model, vocab)
    state, wanted = converted.state_dict(), expected.state_dict()
    assert state.keys() == wanted.keys()
    assert [key for key in state if not torch.equal(state[key], wanted[key])] == []

    # logits: exactly the original's for every official token; the official distribution over them
    backbone = backbone_of(model)
    ids = torch.tensor([[vocab.bos_token_id, 7, 12, 5, 30], [vocab.bos_token_id, 9, 4, 4, 21]])
    inputs = dict(pixels, decoder_input_ids=ids)
    if case.endswith("xpronet"):
        inputs["observation_labels"] = torch.eye(14)[[2, 13]]
    if case.startswith("ithn"):  # the official head: no projection bias, temp_3 as the second temperature
        head = converted.ithn_head
        assert head.image_projection.bias is None and converted.config.separate_synthesis_temperature
        assert torch.equal(head.synthesis_logit_scale, official["temp_3"]) and converted.config.single_view
        inputs = dict(inputs, pixel_values=pixels["pixel_values"][:, :1], view_mask=pixels["view_mask"][:, :1])
    with torch.no_grad():
        original, new = backbone(**inputs).logits, backbone_of(converted)(**inputs).logits
    kept = [i for i in range(original.size(-1)) if i not in (vocab.pad_token_id, vocab.bos_token_id)]
    assert torch.equal(new[..., kept], original[..., kept])
    assert (new[..., [vocab.pad_token_id, vocab.bos_token_id]] == -1.0e4).all()
    torch.testing.assert_close(new.log_softmax(-1)[..., kept], original[..., kept].log_softmax(-1), rtol=0, atol=1e-6)

    # beam-3 reports: the same ids and text, as the official tokenizer would decode them
    generate = {k: v for k, v in inputs.items() if k != "decoder_input_ids"}
    generated, reference = converted.generate(**generate), expected.generate(**generate)
    assert converted.generation_config.num_beams == 3 and converted.generation_config.max_new_tokens == MAX_LEN
    assert torch.equal(generated, reference)
    assert converted.generation_config.suppress_tokens == sorted([vocab.pad_token_id, vocab.bos_token_id])
    tokenizer = tokenizer_for(tokens, CLEANER, THRESHOLD)
    texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
    assert texts == [official_decode(row, vocab, tokens) for row in generated.tolist()]
    assert all(text for text in texts)


def test_ithn_checkpoint_converts_to_its_backbone(tokens, annotation, pixels, tmp_path) -> None:
    model, vocab, path = official_checkpoint("ithn", tokens, tmp_path / "ithn.pth")
    converted = convert("ithn", path, annotation, overrides=SETS + ["model.topk=4"], backbone_only=True)
    assert type(converted.model) is R2GenCMNForConditionalGeneration
    expected = as_converted(model, vocab).backbone
    assert all(torch.equal(value, expected.state_dict()[key]) for key, value in converted.model.state_dict().items())
    unused = converted.provenance["official_tensors_not_used"]
    assert set(unused) == {"img_projection.linear1.weight", "text_projection.linear1.weight", "temp_1", "temp_3"}
    assert unused["temp_3"] == pytest.approx(math.log(1 / 0.07), abs=1e-5)  # ITHN's initial log(1/τ)


# ------------------------------------------------------------------------------------------------ refusals
@pytest.fixture(scope="module")
def cmn_state(tokens, tmp_path_factory) -> dict[str, torch.Tensor]:
    _, _, path = official_checkpoint("r2gencmn", tokens, tmp_path_factory.mktemp("cmn") / "model.pth")
    return load_official_checkpoint(path).state_dict


def convert_state(state, annotation, path: Path, sets=("model.topk=4",)):
    torch.save({"state_dict": state}, path)
    return convert("r2gencmn", path, annotation, overrides=SETS + list(sets))


def test_missing_and_extra_keys_are_listed(cmn_state, annotation, tmp_path) -> None:
    missing = {k: v for k, v in cmn_state.items() if k != f"{M}.decoder.layers.1.src_attn.linears.2.weight"}
    with pytest.raises(ValueError, match=r"1 key\(s\) the model needs are missing .*decoder\.layers\.1\.src_attn\."
                                         r"linears\.2\.weight"):  # fmt: skip
        convert_state(missing, annotation, tmp_path / "missing.pth")
    extra = dict(cmn_state, **{f"{ED}.extra_head.weight": torch.zeros(2, 2), "temp_3": torch.tensor(1.0)})
    with pytest.raises(ValueError, match=r"2 key\(s\) of the checkpoint have no place .*encoder_decoder\.extra_head"
                                         r"\.weight, temp_3.*convert with method ithn"):  # fmt: skip
        convert_state(extra, annotation, tmp_path / "extra.pth")


def test_tied_copies_must_agree_and_shapes_must_fit(cmn_state, annotation, tmp_path) -> None:
    untied = dict(cmn_state)
    untied[f"{M}.cmn.linears.0.weight"] = untied[f"{M}.cmn.linears.0.weight"] + 1
    with pytest.raises(ValueError, match=r"encoder_decoder\.cmn\.linears\.0\.weight and .*model\.cmn.* differ"):
        convert_state(untied, annotation, tmp_path / "untied.pth")
    with pytest.raises(ValueError, match=r"encoder_decoder\.memory_matrix has shape \(16, 32\) where "
                                         r"encoder\.memory\.matrix needs \(8, 32\)"):  # fmt: skip
        convert_state(cmn_state, annotation, tmp_path / "shape.pth", sets=("model.topk=4", "model.cmm_size=8"))


def test_wrong_vocabulary_size_names_both_sizes(cmn_state, annotation, tmp_path) -> None:
    with pytest.raises(ValueError, match=rf"vocabulary has {len(cmn_state[f'{ED}.logit.weight']) - 1} tokens .* "
                                         r"gives \d+ tokens .*threshold"):  # fmt: skip
        convert_state(cmn_state, annotation, tmp_path / "vocab.pth", sets=("model.topk=4", "tokenizer.min_count=2"))


def test_pickled_objects_are_refused_and_the_plain_extract_is_accepted(cmn_state, annotation, tmp_path) -> None:
    pickled = tmp_path / "model_iu_xray.pth"
    torch.save({"epoch": 3, "state_dict": cmn_state, "args": argparse.Namespace(dataset_name="iu_xray")}, pickled)
    with pytest.raises(ValueError, match=r"(?s)pickles Python objects \(.*argparse\.Namespace.*\).*weights_only=True"
                                         r".*model_iu_xray\.state_dict\.pth") as refused:  # fmt: skip
        load_official_checkpoint(pickled)
    # the command the message gives allows only argparse.Namespace, keeps weights_only=True and writes the plain file
    command = str(refused.value).split("\n  ", 1)[1]
    assert "weights_only=False" not in command and "add_safe_globals([argparse.Namespace])" in command
    subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=tmp_path, check=True)
    extracted = load_official_checkpoint(tmp_path / "model_iu_xray.state_dict.pth")
    assert all(torch.equal(extracted.state_dict[key], value) for key, value in cmn_state.items())
    # what the documented one-liner writes: {"state_dict": ...}; DataParallel's module. prefix is accepted too
    parallel = {f"module.{key}": value for key, value in cmn_state.items()}
    torch.save(parallel, tmp_path / "bare.pth")
    checkpoint = load_official_checkpoint(tmp_path / "bare.pth")
    assert checkpoint.layout == "bare state dict" and set(checkpoint.state_dict) == set(cmn_state)
    convert_state(cmn_state, annotation, tmp_path / "model_iu_xray.state_dict.pth")


def test_a_checkpoint_without_tensors_is_refused(tmp_path) -> None:
    torch.save({"state_dict": {"a": 1}}, tmp_path / "numbers.pth")
    with pytest.raises(ValueError, match=r"numbers\.pth has no state dict of tensors: entries \['a'\]"):
        load_official_checkpoint(tmp_path / "numbers.pth")
    with pytest.raises(FileNotFoundError, match="nothing.pth does not exist"):
        load_official_checkpoint(tmp_path / "nothing.pth")


# ------------------------------------------------------------------------------------------------ the real vocabulary
def test_real_iu_xray_annotation_rebuilds_the_official_vocabulary(shared_data) -> None:
    annotation = json.loads((shared_data / "iu_xray" / "annotation.json").read_text(encoding="utf-8"))
    assert set(annotation) == {"train", "val", "    "}  # the test key of this copy is four spaces
    tokens = official_tokens([entry["report"] for entry in annotation["train"]], CLEANER, THRESHOLD)
    assert len(tokens) == 760 and tokens == sorted(tokens)  # 759 words + <unk>, official ids 1..760
    assert tokens.index("<unk>") == 17 and tokens[:2] == [".", "1"]  # '<' sorts after the digits, before letters
    tokenizer = tokenizer_for(tokens, CLEANER, THRESHOLD)
    assert len(tokenizer) == 763 and tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<pad>", "<bos>", "<eos>",
                                                                                         "<unk>", "."]  # fmt: skip
    check_vocabulary_size(761, tokens, "annotation.json")  # the official output layer: 760 tokens + id 0
    with pytest.raises(ValueError, match=r"has 761 tokens \(762 output rows.*gives 760 tokens \(759 words"):
        check_vocabulary_size(762, tokens, "annotation.json")
    vocab = VocabularyMap.build(tokens, tokenizer)
    report = annotation["train"][0]["report"]
    ours = tokenizer(report)["input_ids"]
    official = [0] + [int(vocab.official_of_ours[i]) for i in ours[1:-1]] + [0]
    cleaned = tokenizer.clean(report).split()
    assert official[1:-1] == [tokens.index(w) + 1 if w in tokens else tokens.index("<unk>") + 1 for w in cleaned]


# ------------------------------------------------------------------------------------------------ CLI end to end
@pytest.fixture(scope="module")
def converted_folder(tokens, annotation, tmp_path_factory):
    folder = tmp_path_factory.mktemp("converted")
    model, vocab, path = official_checkpoint("xpronet", tokens, folder / "model_iu_xray.pth")
    out = folder / "xpronet-iu"
    code = main(["convert", "xpronet", str(path), "--annotation", str(annotation), "--out", str(out),
                 *[arg for s in SETS + CASES["xpronet"][1] for arg in ("--set", s)]])  # fmt: skip
    assert code == 0
    return out, path


def test_converted_folder_generates_from_the_cli(converted_folder, shared_data, capsys) -> None:
    from hf_rrg.hub.loading import load_model_and_processor

    out, checkpoint = converted_folder
    names = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md",
            "modeling_xpronet.py", "pipeline_rrg.py"} <= names  # fmt: skip
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = read_front_matter(card)["converted_from"]
    import hashlib

    assert meta["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["checkpoint_file"] == "model_iu_xray.pth" and meta["checkpoint_epoch"] == 17
    assert meta["official_code"] == "https://github.com/Markin-Wang/XProNet" and "ECCV 2022" in meta["paper"]
    assert "## Provenance" in card and "label head" in card
    assert "trained on **IU X-Ray (Open-i, Indiana University)** by the authors' official code" in card
    config = json.loads((out / "config.json").read_text())
    assert config["share_fusion_layer"] is False and config["visual_backbone"] == "resnet18"

    image = shared_data / "misc_cxr_images" / "00000001_000.png"
    capsys.readouterr()
    assert main(["generate", "--model", str(out), str(image)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    model, processor = load_model_and_processor(out)
    expected = processor.batch_decode(model.generate(**processor(images=[[str(image)]])), skip_special_tokens=True)
    assert printed == expected[0] and printed


def test_converted_folder_loads_as_remote_code_without_hf_rrg(converted_folder, shared_data, tmp_path) -> None:
    from hf_rrg.hub.loading import load_model_and_processor

    out, _ = converted_folder
    image = shared_data / "misc_cxr_images" / "16747_3_1.jpg"
    model, processor = load_model_and_processor(out)
    expected = model.generate(**processor(images=[[str(image)]])).tolist()
    code = f"""
import json, math, torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
folder = {str(out)!r}
model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
ids = model.generate(**processor(images=[[{str(image)!r}]])).tolist()
fresh = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder, trust_remote_code=True),
                                                trust_remote_code=True)
w = fresh.encoder.transformer.layers[0].self_attn.q_proj.weight
print(json.dumps({{"ids": ids, "module": type(model).__module__, "max_abs": w.abs().max().item(),
                  "fan": w.shape[0] + w.shape[1], "fan_in": w.shape[1]}}))
"""
    result = run_without_hf_rrg(code, tmp_path)
    assert result["ids"] == expected and not result["module"].startswith("hf_rrg")
    bound = math.sqrt(6 / result["fan"])
    assert 1 / math.sqrt(result["fan_in"]) < result["max_abs"] <= bound  # xavier, also through remote code


def test_convert_cli_reports_errors_in_one_line(tokens, annotation, tmp_path, capsys) -> None:
    code = main(["convert", "r2gen", str(tmp_path / "absent.pth"), "--annotation", str(annotation),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 1 and "hf-rrg convert: error: Checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shipped_configs_are_the_conversion_starting_points() -> None:
    from hf_rrg.convert.releases import DATASETS, METHODS, shipped_config_name
    from hf_rrg.training.config import packaged_config_dir

    for method in METHODS:
        for dataset in DATASETS:
            for backbone in ("r2gencmn", "xpronet") if method == "ithn" else (None,):
                path = packaged_config_dir() / f"{shipped_config_name(method, dataset, backbone)}.yaml"
                data = yaml.safe_load(path.read_text())
                model = data["model"].get("backbone_config", data["model"])
                assert model["visual_backbone"] == "resnet101.tv_in1k", path.name
                assert "max_length" not in data["generation"], path.name


def test_predict_writes_a_split_for_evaluate(converted_folder, tmp_path, capsys) -> None:
    from hf_rrg.data import load_builder
    from hf_rrg.hub.loading import load_model_and_processor

    out, _ = converted_folder
    file = tmp_path / "predictions.jsonl"
    assert main(["predict", "--model", str(out), "--dataset", "demo", "--split", "test", "--limit", "2",
                 "--batch-size", "2", "--out", str(file)]) == 0  # fmt: skip
    lines = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]
    data = load_builder("demo", split="test")[:2]  # columns as lists
    model, processor = load_model_and_processor(out)
    expected = processor.batch_decode(model.generate(**processor(images=data["images"])), skip_special_tokens=True)
    assert [line["prediction"] for line in lines] == expected
    assert [line["reference"] for line in lines] == data["report"] and [line["id"] for line in lines] == data["id"]
    capsys.readouterr()
    assert main(["evaluate", str(file), "--protocol", "r2gen", "--tokenizer", str(out), "--max-seq-length",
                 str(MAX_LEN), "--metrics", "bleu", "--out", str(tmp_path / "scores.json")]) == 0  # fmt: skip
    assert 0.0 <= json.loads((tmp_path / "scores.json").read_text())["scores"]["bleu_4"] <= 1.0


def write_label_file(path: Path, rows: dict[str, list[int]], train: list[str]) -> Path:
    """An hf-rrg XProNet label file (`hf_rrg.xpronet.labels` format) with the default 14 slots."""
    from hf_rrg.modeling.configuration_xpronet import XPRONET_OBSERVATIONS

    data = {"format": "hf-rrg/xpronet-labels/v1", "observation_names": list(XPRONET_OBSERVATIONS),
            "policy": {"uncertain_as_positive": True, "no_positive_slot": "No Finding"},
            "splits": {"train": train}, "labels": rows}  # fmt: skip
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_xpronet_prototype_file_and_label_prior(tokens, annotation, tmp_path) -> None:
    model, vocab, path = official_checkpoint("xpronet", tokens, tmp_path / "full.pth")
    state = load_official_checkpoint(path).state_dict
    prototypes = state.pop(f"{ED}.protypes")
    torch.save(prototypes.clone(), tmp_path / "init_prototypes.pt")  # the official init_prototypes.pt layout
    save_trainer_checkpoint(state, tmp_path / "no_prototypes.pth")
    # train split: slot 1 (Cardiomegaly) in 3 of 4 studies, slot 13 (No Finding) in 1 of 4; a test id is not counted
    rows = {f"s{i}": [int(j == (1 if i < 3 else 13)) for j in range(14)] for i in range(4)}
    rows["t0"] = [1] * 14
    labels = write_label_file(tmp_path / "labels.json", rows, train=["s0", "s1", "s2", "s3"])
    converted = convert("xpronet", tmp_path / "no_prototypes.pth", annotation, labels=labels,
                        prototypes=tmp_path / "init_prototypes.pt", overrides=SETS + CASES["xpronet"][1])  # fmt: skip
    network = converted.model.encoder.prototype_network
    assert torch.equal(network.prototypes, model.encoder.prototype_network.prototypes)
    prior = torch.full((14,), 1e-4)
    prior[1], prior[13] = 0.75, 0.25
    torch.testing.assert_close(network.label_head.bias, torch.log(prior / (1 - prior)))
    assert (network.label_head.weight == 0).all()
    labels_now = network.predict_labels(network.label_head(torch.randn(2, network.label_head.in_features)))
    assert labels_now.tolist() == [[float(j == 1) for j in range(14)]] * 2  # the prior's majority: Cardiomegaly
    assert converted.provenance["prototypes"]["file"] == "init_prototypes.pt"
    with pytest.raises(ValueError, match="already holds its trained prototypes"):
        convert("xpronet", path, annotation, prototypes=tmp_path / "init_prototypes.pt",
                overrides=SETS + CASES["xpronet"][1])  # fmt: skip


def test_predict_gives_reference_labels_to_xpronet(converted_folder, tmp_path) -> None:
    from hf_rrg.data import load_builder
    from hf_rrg.hub.loading import load_model_and_processor

    out, _ = converted_folder
    data = load_builder("demo", split="test")[:2]  # columns as lists
    rows = {data["id"][0]: [int(j == 4) for j in range(14)], data["id"][1]: [int(j == 9) for j in range(14)]}
    labels = write_label_file(tmp_path / "labels.json", rows, train=list(rows))
    file = tmp_path / "predictions.jsonl"
    assert main(["predict", "--model", str(out), "--dataset", "demo", "--limit", "2", "--batch-size", "2",
                 "--labels", str(labels), "--out", str(file)]) == 0  # fmt: skip
    model, processor = load_model_and_processor(out)
    given = torch.tensor([rows[i] for i in data["id"]], dtype=torch.float32)
    ids = model.generate(**processor(images=data["images"]), observation_labels=given)
    expected = processor.batch_decode(ids, skip_special_tokens=True)
    assert [json.loads(line)["prediction"] for line in file.read_text().splitlines()] == expected
