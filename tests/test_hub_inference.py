"""Hub-hosted inference of an export: the Inference Endpoints handler and the card's declared `pipeline_tag`, both
run where hf_rrg cannot be imported; the card's licence, datasets, widget, base_model and data-use metadata; the
Space folder `hf-rrg space` writes; `hf-rrg generate --heatmap`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_hub_fixtures import make_run_dir, misc_images, real_reports, run_without_hf_rrg

from hf_rrg.cli import main
from hf_rrg.hub import card_metadata, export_model, report_pipeline
from hf_rrg.hub.examples import PERMISSIVE_LICENCES, example_images
from hf_rrg.hub.model_card import read_front_matter, render_model_card
from hf_rrg.hub.run_folder import RunInfo
from hf_rrg.hub.space import write_space


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_data: Path) -> Path:
    base = tmp_path_factory.mktemp("inference")
    run = make_run_dir(base / "run", "r2gen", real_reports(shared_data), seed=11)
    return export_model(run, base / "export", repo_id="hf-rrg-test/r2gen-tiny")


@pytest.fixture(scope="module")
def pipe(exported):
    return report_pipeline(exported, device="cpu")


def test_handler_and_declared_pipeline_tag_work_without_hf_rrg(exported, pipe, shared_data, tmp_path):
    """`handler.py` (Inference Endpoints) and `pipeline(<the card's pipeline_tag>, model=DIR,
    trust_remote_code=True)` in a process where `import hf_rrg` fails give the pipeline's reports."""
    png, jpeg, _, dicom, _ = (str(path) for path in misc_images(shared_data))
    tag = read_front_matter((exported / "README.md").read_text())["pipeline_tag"]
    assert tag == "image-text-to-text"
    code = f"""
import base64, json, sys
from PIL import Image
sys.path.insert(0, {str(exported)!r})
from handler import EndpointHandler
from transformers import pipeline

def b64(path):
    return base64.b64encode(open(path, "rb").read()).decode()

handler = EndpointHandler({str(exported)!r})
one = handler({{"inputs": b64({png!r})}})
study = handler({{"inputs": [b64({png!r}), "data:application/dicom;base64," + b64({dicom!r})],
                  "parameters": {{"num_beams": 1, "max_new_tokens": 5}}}})
errors = []
for bad in ({{"inputs": "not base64 at all!"}}, {{"inputs": []}}, {{}},
            {{"inputs": b64({png!r}), "parameters": {{"beams": 2}}}},
            {{"inputs": b64({png!r}), "parameters": {{"num_beams": 0}}}},
            {{"inputs": b64({png!r}), "parameters": {{"max_new_tokens": "ten"}}}},
            {{"inputs": base64.b64encode(b"garbage bytes").decode()}}):
    try:
        handler(bad)
        errors.append(None)
    except ValueError as error:
        errors.append(str(error))
standard = pipeline({tag!r}, model={str(exported)!r}, trust_remote_code=True, device="cpu")
print(json.dumps({{
    "one": one, "study": study, "errors": errors,
    "module": type(standard.model).__module__,
    "png": standard(images={png!r}, text=""),
    "jpeg_image": standard(images=Image.open({jpeg!r}), text=""),
    "prompted": standard(images={png!r}, text="the heart is normal"),
}}))
"""
    remote = run_without_hf_rrg(code, tmp_path)
    report = pipe(png)[0]["generated_text"]
    assert remote["one"] == [{"generated_text": report}]
    short = pipe((png, dicom), generate_kwargs={"num_beams": 1, "max_new_tokens": 5})
    assert remote["study"] == short and len(short[0]["generated_text"].split()) <= 5
    bad_base64, empty, missing, unknown, zero, text, garbage = remote["errors"]
    assert "inputs is not valid base64" in bad_base64
    assert "empty list" in empty and 'no "inputs"' in missing
    assert "Unknown parameter(s) ['beams']" in unknown and "allowed" in unknown
    assert "at least 1" in zero and 'Parameter "max_new_tokens" must be an integer' in text
    assert garbage is not None  # undecodable bytes are refused by the image loader with a ValueError
    assert remote["module"].startswith("transformers_modules.")
    assert remote["png"] == [{"input_text": "", "generated_text": report}]
    assert remote["jpeg_image"] == [{"input_text": "", "generated_text": pipe(jpeg)[0]["generated_text"]}]
    prompted = remote["prompted"][0]["generated_text"]  # the prompt, then what the model wrote after it
    assert prompted.startswith("the heart is normal ") and len(prompted.split()) > 4


def test_empty_prompt_is_a_generation_start_and_a_prompt_is_continued(exported, shared_data):
    """What the image-text-to-text pipeline relies on: `processor(images, text="")` gives `<bos>` as the decoder
    start, and `generate` continues a tokenised report prompt instead of stopping at its `<eos>`."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(exported).eval()
    processor = AutoProcessor.from_pretrained(exported)
    image = str(misc_images(shared_data)[0])
    empty = processor(images=[[image]], text="")
    assert empty["decoder_input_ids"].tolist() == [[processor.tokenizer.bos_token_id]]
    prompt = processor(images=[[image]], text="the heart is normal")
    assert prompt["input_ids"][0, -1] == processor.tokenizer.eos_token_id
    with torch.no_grad():
        plain = model.generate(**processor(images=[[image]]), num_beams=1)
        started = model.generate(**empty, num_beams=1)
        continued = model.generate(**prompt, num_beams=1, max_new_tokens=4)
    assert started.tolist() == plain.tolist()
    prefix = prompt["input_ids"][0, :-1].tolist()
    assert continued[0, : len(prefix)].tolist() == prefix and continued.shape[1] > len(prefix)
    with pytest.raises(ValueError, match="different lengths"):
        two = processor(images=[[image], [image]], text=["the heart", "the heart is normal"])
        model.generate(**two)


def test_card_licence_datasets_widget_and_files(exported, pipe):
    card = (exported / "README.md").read_text()
    meta = read_front_matter(card)
    assert meta["license"] == "other"
    assert meta["license_name"] == "cc-by-nc-nd-4.0"  # IU X-Ray's dataset card
    assert meta["license_link"] == "LICENSE.md"
    licence = (exported / "LICENSE.md").read_text()
    assert "cc-by-nc-nd-4.0" in licence and "IU X-Ray" in licence
    assert meta["datasets"] == ["iu_xray"]
    assert "base_model" not in meta  # trained from scratch (visual_pretrained: false)
    assert "extra_gated_prompt" not in meta and "Data use warning" not in card
    widget = meta["widget"]
    assert len(widget) == 2
    for entry in widget:
        assert entry["src"].startswith("https://huggingface.co/hf-rrg-test/r2gen-tiny/resolve/main/examples/")
        shipped = exported / card_metadata.widget_file(entry["src"])
        assert shipped.is_file()
        assert entry["output"]["text"] == pipe(str(shipped))[0]["generated_text"]  # the model's own report
    for example in example_images():
        assert example.licence in PERMISSIVE_LICENCES
        assert f"`examples/{example.name}`: {example.licence}, from <{example.source_url}>" in card
    assert (exported / "handler.py").is_file() and "timm" in (exported / "requirements.txt").read_text()
    assert '"inputs": views' in card and "hf-rrg space hf-rrg-test/r2gen-tiny" in card


def test_credentialed_training_data_gets_a_warning_and_gating(exported):
    terms = card_metadata.data_terms("mimic_cxr")
    assert terms is not None and terms.credentialed
    assert not card_metadata.data_terms("iu_xray").credentialed
    assert card_metadata.data_terms("no_such_dataset") is None and card_metadata.data_terms("../x") is None
    config = json.loads((exported / "config.json").read_text())
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(exported)
    extra = card_metadata.card_metadata("other", terms, "mimic_cxr", model_config, [])
    run = RunInfo(model_dir=exported, training_config={"data": {"builder": "mimic_cxr"}})
    card = render_model_card(run, model_config, None, "m", extra_metadata=extra,
                             preamble=card_metadata.data_use_warning(terms))  # fmt: skip
    meta = read_front_matter(card)
    assert meta["license_name"] == "physionet-credentialed-health-data-license-1.5.0"
    assert "credentialed" in meta["extra_gated_prompt"] and meta["extra_gated_fields"]
    body = card.split("---\n", 2)[2].lstrip()
    assert body.startswith("> **Data use warning.** This model was trained on mimic_cxr")
    assert list(meta)[:6] == ["library_name", "pipeline_tag", "license", "license_name", "license_link", "datasets"]
    assert config["model_type"] == "r2gen"


def test_base_model_names_the_pretrained_checkpoints():
    from hf_rrg import DCRRGConfig, R2GenConfig

    pretrained = card_metadata.base_models(R2GenConfig(visual_backbone="resnet101", visual_pretrained=True))
    assert len(pretrained) == 1 and pretrained[0].startswith("timm/resnet101")
    assert card_metadata.base_models(R2GenConfig(visual_backbone="resnet101", visual_pretrained=False)) == []
    dcrrg = DCRRGConfig(visual_pretrained=False, text_encoder_name_or_path="emilyalsentzer/Bio_ClinicalBERT")
    assert card_metadata.base_models(dcrrg) == ["emilyalsentzer/Bio_ClinicalBERT"]
    assert card_metadata.base_models(DCRRGConfig(visual_pretrained=False, text_encoder_name_or_path="/data/bert")) == []


def test_space_folder_metadata_and_rules(exported, tmp_path):
    space = write_space(exported, tmp_path / "space")
    names = {path.name for path in space.iterdir()}
    assert {"app.py", "report_explanation.py", "requirements.txt", "README.md", "space_config.json", "examples",
            "model", "hf_rrg_export.json"} <= names  # fmt: skip
    meta = read_front_matter((space / "README.md").read_text())
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and "models" not in meta  # bundled model
    settings = json.loads((space / "space_config.json").read_text())
    assert settings["model"] == "model" and settings["dicom_modalities"] == ["CR", "DX", "RG"]
    assert settings["title"] == "r2gen-tiny"  # the exported model's name (its card's title), not the folder's
    assert all((space / example).is_file() for example in settings["examples"])
    assert (space / "model" / "model.safetensors").read_bytes() == (exported / "model.safetensors").read_bytes()
    assert "gradio>=" in (space / "requirements.txt").read_text()
    from transformers.dynamic_module_utils import get_imports

    assert not any(name.startswith("hf_rrg") for name in get_imports(space / "report_explanation.py"))

    hub = write_space("hf-rrg-test/r2gen-tiny", tmp_path / "hub_space")
    meta = read_front_matter((hub / "README.md").read_text())
    assert meta["models"] == ["hf-rrg-test/r2gen-tiny"] and not (hub / "model").exists()
    assert json.loads((hub / "space_config.json").read_text())["model"] == "hf-rrg-test/r2gen-tiny"
    named = write_space(exported, tmp_path / "named", model_id="org/model")
    assert read_front_matter((named / "README.md").read_text())["models"] == ["org/model"]

    with pytest.raises(FileExistsError, match="not empty"):
        write_space(exported, space)
    write_space(exported, space, overwrite=True)  # a previous Space export is replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a previous hf-rrg export"):
        write_space(exported, tmp_path / "mine", overwrite=True)
    with pytest.raises(FileNotFoundError, match="neither a model folder nor a Hub id"):
        write_space(tmp_path / "missing", tmp_path / "x")


def test_space_and_demo_commands(exported, tmp_path, capsys, monkeypatch):
    """`hf-rrg space` writes the folder with its options; `hf-rrg demo` serves the page of the model (the server
    replaced by a recorder) and says what to install when gradio is missing."""
    from hf_rrg.hub import space_app

    out = tmp_path / "space"
    assert main(["space", str(exported), "--out", str(out), "--title", "Chest X-ray demo", "--modalities", "DX"]) == 0
    assert f"Wrote the Space for {exported} to {out}" in capsys.readouterr().out
    settings = json.loads((out / "space_config.json").read_text())
    assert settings["title"] == "Chest X-ray demo" and settings["dicom_modalities"] == ["DX"]

    pytest.importorskip("gradio", reason="the demo extra is not installed: pip install '.[dev]'")
    served = {}
    monkeypatch.setattr(space_app, "launch", lambda demo, host=None, port=None: served.update(demo=demo, host=host,
                                                                                             port=port))  # fmt: skip
    assert main(["demo", str(exported), "--port", "7999"]) == 0
    assert f"Serving the demo page of {exported} on http://127.0.0.1:7999" in capsys.readouterr().out
    demo = served["demo"]
    assert (served["host"], served["port"]) == ("127.0.0.1", 7999) and demo.title == "r2gen-tiny"
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"rrg-view-1", "rrg-view-2", "rrg-files", "rrg-beams", "rrg-max-new-tokens", "rrg-report",
            "rrg-gallery", "rrg-error"} <= ids and "rrg-view-3" not in ids  # max_views 2  # fmt: skip

    monkeypatch.setitem(__import__("sys").modules, "gradio", None)  # import gradio fails
    assert main(["demo", str(exported)]) == 1
    assert 'install it with: pip install "hf-rrg[demo]"' in capsys.readouterr().err


def test_space_app_settings_and_errors_without_a_browser(exported, shared_data, tmp_path):
    """The click handler of the page: the report, per-view overlays, and one-line messages for bad input."""
    from hf_rrg.hub import space_app

    settings = space_app.AppSettings.from_file(write_space(exported, tmp_path / "s") / "space_config.json")
    model, processor = space_app.load_model(settings.model, device="cpu")
    png, _, _, dicom, _ = (str(path) for path in misc_images(shared_data))
    beams, tokens = model.generation_config.num_beams, model.generation_config.max_new_tokens
    assert space_app.default_settings(model) == (beams, tokens)  # the sliders start at the model's settings
    report, pictures, findings, about, error = space_app.run_study(model, processor, settings, png, None, [dicom],
                                                                   beams, tokens)  # fmt: skip
    assert error == "" and len(pictures) >= 2 and findings is None and "cross-attention" in about
    assert about.startswith(f"2 views, {beams} beams, at most {tokens} new tokens.")
    assert report == report_pipeline(exported, device="cpu")((png, dicom))[0]["generated_text"]
    assert space_app.generate_kwargs(model, beams, tokens) == {}
    assert space_app.generate_kwargs(model, beams + 1, tokens - 1) == {"num_beams": beams + 1,
                                                                       "max_new_tokens": tokens - 1}  # fmt: skip
    empty = space_app.run_study(model, processor, settings, None, None, None, beams, tokens)
    assert empty[4] == "**Error:** Upload at least one view: a PNG or JPEG in an image box, or a DICOM file."
    too_many = space_app.run_study(model, processor, settings, png, png, [png], beams, tokens)
    assert "at most 2 views" in too_many[4]
    Image.new("RGB", (8, 8)).save(tmp_path / "flat.png")
    flat = space_app.run_study(model, processor, settings, str(tmp_path / "flat.png"), None, None, beams, tokens)
    assert "flat.png" in flat[4] and "constant" in flat[4] and flat[0] == ""
    assert str(tmp_path) not in flat[4]  # the page names the file, not the server's upload folder


def test_generate_heatmap_writes_overlays(exported, shared_data, tmp_path, capsys):
    png, _, _, dicom, _ = (str(path) for path in misc_images(shared_data))
    out = tmp_path / "maps"
    code = main(["generate", "--model", str(exported), png, dicom, "--views-per-study", "2", "--num-beams", "1",
                 "--heatmap", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    report = captured.out.strip()
    pipe = report_pipeline(exported, device="cpu")
    assert report == pipe((png, dicom), num_beams=1)[0]["generated_text"]
    written = sorted(out.glob("00000001_000_*.png"))
    assert written and len(written) % 2 == 0  # one overlay per view of every sentence
    assert Image.open(written[0]).size == (64, 64)
    assert "overlays (cross-attention" in captured.err and str(out) in captured.err
