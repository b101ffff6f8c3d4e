"""DCRRG's P-Tuning v2 adapter as a PEFT citizen: `peft_model.generate(pixel_values=...)` without a helper, an Auto
class that loads an adapter folder alone, a real adapter card without local paths, and `hf-rrg push` of an adapter
folder (up to the network: HfApi is replaced; no token / offline end in one line)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from test_dcrrg import tiny_model
from test_hub_push import RecordingApi

from hf_rrg.cli import main
from hf_rrg.hub.model_card import read_front_matter
from hf_rrg.modeling.modeling_dcrrg import DCRRGForConditionalGeneration

ABSOLUTE_PATH = re.compile(r"(?<![\w.:/-])/(?:tmp|home|root|work|Users|var|private)/")


@pytest.fixture
def base_dir(tmp_path):
    """A saved step-3 DCRRG model (the adapter's base) in a local folder."""
    folder = tmp_path / "base"
    tiny_model().save_pretrained(folder)
    return folder


def adapter_of(base_dir, **kwargs):
    from hf_rrg.dcrrg.prefix import add_prefix_adapter

    base = DCRRGForConditionalGeneration.from_pretrained(base_dir)
    return add_prefix_adapter(base, num_virtual_tokens=4, encoder_hidden_size=8, seed=3, **kwargs).eval()


def bos_generate(peft_model, pixels, **kwargs):
    """What PEFT's own seq2seq `generate` needs: the `<bos>` decoder prompt passed as `input_ids` by hand."""
    bos = peft_model.get_base_model().config.bos_token_id
    return peft_model.generate(pixel_values=pixels, input_ids=torch.full((pixels.size(0), 1), bos), **kwargs)


def test_peft_model_generates_from_pixels_alone(base_dir) -> None:
    from hf_rrg.dcrrg.prefix import generate_with_adapter

    peft_model = adapter_of(base_dir)
    pixels = torch.randn(3, 1, 3, 64, 64)
    with torch.no_grad():
        expected = bos_generate(peft_model, pixels, num_beams=3)
        assert torch.equal(peft_model.generate(pixel_values=pixels), expected)  # beam 3 from generation_config
        assert torch.equal(peft_model.generate(pixels, num_beams=3), expected)  # positional, like the base model
        assert torch.equal(generate_with_adapter(peft_model, pixels), expected)  # the old helper still works
        with peft_model.disable_adapter():
            plain = peft_model.get_base_model().generate(pixel_values=pixels, num_beams=3)
    assert not torch.equal(plain, expected)  # the prefix and the re-initialised head are used


def test_auto_class_loads_an_adapter_folder_alone(base_dir, tmp_path, monkeypatch) -> None:
    from peft import AutoPeftModelForSeq2SeqLM

    from hf_rrg.dcrrg import AutoPeftModelForImageTextToText, DCRRGPeftModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    peft_model = adapter_of(base_dir)
    pixels = torch.randn(2, 1, 3, 64, 64)
    with torch.no_grad():
        expected = peft_model.generate(pixel_values=pixels)
    peft_model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        base_dir)  # fmt: skip
    loaded = AutoPeftModelForImageTextToText.from_pretrained(tmp_path / "adapter")
    assert isinstance(loaded, DCRRGPeftModel) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded.generate(pixel_values=pixels), expected)
    # PEFT's own Auto class finds DCRRG too (registered for AutoModelForSeq2SeqLM); its wrapper needs <bos> by hand
    stock = AutoPeftModelForSeq2SeqLM.from_pretrained(str(tmp_path / "adapter")).eval()
    assert isinstance(stock.get_base_model(), DCRRGForConditionalGeneration)
    with torch.no_grad():
        assert torch.equal(bos_generate(stock, pixels, num_beams=3), expected)
    with pytest.raises(ValueError, match="adapter_config.json"):
        AutoPeftModelForImageTextToText.from_pretrained(tmp_path / "base")


def test_saved_adapter_card_is_real_and_free_of_local_paths(base_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # PEFT looks the named base model up on the Hub when saving
    peft_model = adapter_of(base_dir)
    peft_model.save_pretrained(tmp_path / "adapter")
    card = (tmp_path / "adapter" / "README.md").read_text()
    meta = read_front_matter(card)
    assert meta["library_name"] == "peft" and "base_model" not in meta  # a local base has no Hub id to name
    assert {"dcrrg", "prefix-tuning", "radiology-report-generation"} <= set(meta["tags"])
    assert "P-Tuning v2" in card and "num_virtual_tokens: 4" in card and "lm_head" in card
    tokens, layers, d, vocab = 4, 2, 32, 30  # the prefix as the MLP computes it (what PEFT saves) + the head
    assert f"{tokens * layers * 2 * d + d * vocab + vocab:,} values" in card
    assert "BASE_MODEL" in card and "--base-model" in card  # a clear placeholder, not the local folder
    assert str(tmp_path) not in card and not ABSOLUTE_PATH.search(card), card
    assert "[More Information Needed]" not in card  # not PEFT's empty template
    named = adapter_of(base_dir, base_model_id="my-org/dcrrg-base")
    named.save_pretrained(tmp_path / "named")
    card = (tmp_path / "named" / "README.md").read_text()
    assert read_front_matter(card)["base_model"] == "my-org/dcrrg-base" and "BASE_MODEL" not in card
    assert json.loads((tmp_path / "named" / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "my-org/dcrrg-base")  # fmt: skip


def test_push_of_an_adapter_folder(base_dir, tmp_path, monkeypatch, capsys) -> None:
    import huggingface_hub

    from hf_rrg.hub import push_to_hub

    adapter_of(base_dir).save_pretrained(tmp_path / "adapter")
    api = RecordingApi()
    with pytest.raises(ValueError, match="local path.*--base-model"):
        push_to_hub(tmp_path / "adapter", "me/dcrrg-adapter", api=api)
    assert api.calls == []
    result = push_to_hub(tmp_path / "adapter", "me/dcrrg-adapter", api=api, base_model="me/dcrrg-base")
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert sorted(api.uploaded) == result.files == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    weights = (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()
    assert api.uploaded["adapter_model.safetensors"] == weights
    config = json.loads(api.uploaded["adapter_config.json"])
    assert config["base_model_name_or_path"] == "me/dcrrg-base" and config["peft_type"] == "PREFIX_TUNING"
    card = api.uploaded["README.md"].decode()
    assert read_front_matter(card)["base_model"] == "me/dcrrg-base"
    assert 'AutoPeftModelForImageTextToText.from_pretrained("me/dcrrg-adapter")' in card
    assert not ABSOLUTE_PATH.search(card)
    # the local folder is left as it was (it still loads from the local base)
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        base_dir)  # fmt: skip
    # the command line: an upload, then no token and offline mode each end in one line naming the fix
    RecordingApi.instances.clear()
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    args = ["push", str(tmp_path / "adapter"), "--repo-id", "me/dcrrg-adapter", "--base-model", "me/dcrrg-base"]
    assert main([*args, "--token", "hf_x"]) == 0
    assert "Uploaded 3 files to https://huggingface.co/me/dcrrg-adapter" in capsys.readouterr().out
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("hf-rrg push: error: no Hugging Face token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main([*args, "--token", "hf_x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "HF_HUB_OFFLINE" in err and "unset" in err
