"""CoAtt's data side and recipe: the MTI tag vocabulary on the real IU X-Ray archive, the paper's preprocessing
(alphabetic words, top-1,000 vocabulary, 500/500 seeded split), the PEIR Gross builder on a synthetic folder, the
`tags` -> `train` recipe on real demo studies (tag labels in training batches, num_tags and the `.` id set from the
run), the shipped configs, and export -> load without hf_rrg -> the same reports."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image
from test_hub_fixtures import run_without_hf_rrg

from hf_rrg.coatt.tags import TagVocabulary, build_tag_vocabulary, example_tags
from hf_rrg.data import load_builder
from hf_rrg.modeling.modeling_coatt import CoAttForConditionalGeneration
from hf_rrg.modeling.report_cleaning import clean_report
from hf_rrg.modeling.tokenization_rrg import RRGTokenizer
from hf_rrg.training import ConfigError, config_from_dict, load_config, run_training

# ------------------------------------------------------------------------------------ tags and preprocessing


@pytest.fixture(scope="module")
def iu_reports(shared_data: Path):
    return load_builder(
        "iu_xray", shared_data / "iu_xray", name="nlm", images_required=False, report_section="impression+findings"
    )


def test_mti_tag_vocabulary_of_the_real_iu_archive(iu_reports) -> None:
    every = [example for split in iu_reports.values() for example in split]
    assert len(every) == 3955
    vocabulary = build_tag_vocabulary(every, "mti")
    raw = {tag for example in every for tag in example["mesh_automatic"]}
    assert len(vocabulary) == len({tag.lower() for tag in raw}) == 586  # the paper reports 572
    assert len(build_tag_vocabulary(every, "mti", lowercase=False)) == len(raw) == 659
    # counted once per report, most frequent first
    opacity = sum("opacity" in {t.lower() for t in example["mesh_automatic"]} for example in every)
    assert vocabulary.tags[0] == "opacity" and vocabulary.counts["opacity"] == opacity == 442
    counts = [vocabulary.counts[tag] for tag in vocabulary.tags]
    assert counts == sorted(counts, reverse=True)
    hot = vocabulary.multi_hot(every[:50])
    for row, example in zip(hot, every[:50]):
        assert {vocabulary.tags[i] for i in row.nonzero().flatten().tolist()} == {t.lower() for t in example["mesh_automatic"]}
    assert len(build_tag_vocabulary(every, "mti", min_count=5)) == sum(c >= 5 for c in vocabulary.counts.values())


def test_paper_preprocessing_split_and_vocabulary(shared_data: Path, iu_reports) -> None:
    drawn = load_builder(
        "iu_xray", shared_data / "iu_xray", name="nlm", images_required=False, require_report=True,
        report_section="impression+findings", split_counts=(500, 500), split_seed=0,
    )  # fmt: skip
    assert (len(drawn["validation"]), len(drawn["test"]), len(drawn["train"])) == (500, 500, 2927)
    ids = [set(drawn[s]["id"]) for s in ("train", "validation", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    other = load_builder(
        "iu_xray", shared_data / "iu_xray", name="nlm", images_required=False, require_report=True,
        report_section="impression+findings", split_counts=(500, 500), split_seed=1,
    )  # fmt: skip
    assert set(other["test"]["id"]) != ids[2]
    example = next(e for e in iu_reports["train"] if e["impression"] and e["findings"])
    assert example["report"] == f"{example['impression']} {example['findings']}"
    tokenizer = RRGTokenizer.from_reports(drawn["train"]["report"], cleaner="alphabetic", min_count=1, max_words=1000)
    assert len(tokenizer) == 4 + 1000
    words = [w for r in drawn["train"]["report"] for w in clean_report(r, "alphabetic").split()]
    assert all(w == "." or w.isalpha() for w in words)
    covered = sum(w in tokenizer.get_vocab() for w in words) / len(words)
    assert covered > 0.98  # the paper: the top 1,000 words cover 99.0% of word occurrences


def test_alphabetic_cleaner_and_word_tags() -> None:
    text = "Heart size normal. 1. T12 x-ray shows 3.5 cm nodule!  2. 45 . No effusion"
    assert clean_report(text, "alphabetic") == "heart size normal . shows cm nodule . no effusion ."
    assert example_tags({"report": text}, "words") == ["heart", "size", "normal", "shows", "cm", "nodule", "no", "effusion"]
    with pytest.raises(ValueError, match="unknown tag source 'tags'"):
        example_tags({"report": text}, "tags")
    with pytest.raises(ValueError, match="reads the column 'mesh_automatic'"):
        example_tags({"report": text}, "mti")


def test_tag_vocabulary_file_round_trip_and_errors(tmp_path: Path) -> None:
    examples = [{"report": "heart normal. lungs clear."}, {"report": "heart enlarged."}]
    vocabulary = build_tag_vocabulary(examples, "words", max_tags=3)
    assert vocabulary.tags == ["heart", "clear", "enlarged"]  # heart: 2 reports; ties alphabetical
    loaded = TagVocabulary.load(vocabulary.save(tmp_path / "tags.json"))
    assert loaded == vocabulary and torch.equal(loaded.multi_hot(examples), torch.tensor([[1.0, 1, 0], [1, 0, 1]]))
    (tmp_path / "other.json").write_text('{"format": "x"}')
    with pytest.raises(ValueError, match="is not a CoAtt tag vocabulary"):
        TagVocabulary.load(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError, match="hf-rrg coatt tags"):
        TagVocabulary.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="is empty"):
        build_tag_vocabulary([{"mesh_automatic": []}], "mti")


def test_tags_command_on_the_real_archive(shared_data: Path, tmp_path: Path, capsys) -> None:
    from hf_rrg.cli import main

    out = tmp_path / "mti.json"
    argv = ["coatt", "tags", "iu_xray", "--data-dir", str(shared_data / "iu_xray"), "--config", "nlm",
            "--set", "images_required=false", "--split", "all", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "586 mti tags in split 'all' of iu_xray; most frequent: opacity (442)" in capsys.readouterr().out
    assert len(TagVocabulary.load(out)) == 586


# ------------------------------------------------------------------------------------------- PEIR Gross


def _peir_folder(root: Path, rows: int = 12) -> Path:
    for i in range(rows):
        category = ("Cardiovascular", "Lungs", "Liver")[i % 3]
        (root / category).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (i * 10, 80, 120)).save(root / category / f"{i:05d}.jpg")
    lines = [f"{('Cardiovascular', 'Lungs', 'Liver')[i % 3]}/{i:05d}.jpg\tGross specimen {i}: lesion  seen." for i in range(rows)]
    (root / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_peir_gross_builder_reads_the_documented_layout(tmp_path: Path) -> None:
    root = _peir_folder(tmp_path / "peir")
    built = load_builder("peir_gross", root, split_counts=(2, 3), split_seed=4)
    assert {k: len(v) for k, v in built.items()} == {"train": 7, "validation": 2, "test": 3}
    example = next(e for split in built.values() for e in split if e["id"] == "Lungs/00004")
    assert example["category"] == "Lungs" and example["report"] == "Gross specimen 4: lesion seen."
    assert example["images"][0].size == (40, 30)
    hashed = load_builder("peir_gross", root)
    assert sum(len(v) for v in hashed.values()) == 12
    again = load_builder("peir_gross", root, split_counts=(2, 3), split_seed=4)
    assert again["test"]["id"] == built["test"]["id"]


def test_peir_gross_errors_name_the_problem(tmp_path: Path) -> None:
    root = _peir_folder(tmp_path / "peir")
    (root / "Liver" / "00002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 PEIR Gross images .* missing .*Liver/00002.jpg"):
        load_builder("peir_gross", root)
    assert sum(len(v) for v in load_builder("peir_gross", root, skip_missing_images=True).values()) == 11
    table = root / "captions.tsv"
    table.write_text(table.read_text() + "Lungs/00001.jpg\t\n")
    with pytest.raises(ValueError, match="line 13: the caption of 'Lungs/00001.jpg' is empty"):
        load_builder("peir_gross", root, skip_missing_images=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="caption table .* does not exist"):
        load_builder("peir_gross", tmp_path / "empty")


# ------------------------------------------------------------------------------------------------ recipe

IMAGE_PROCESSOR = {"eval_size": 64, "resize_shorter": 72, "crop_size": 64, "max_views": 2}
TINY_MODEL = {
    "visual_backbone": "test_resnet", "visual_pretrained": False, "hidden_size": 32, "embedding_size": 32,
    "mlc_hidden_size": 32, "num_semantic_tags": 4, "max_sentences": 4, "max_words_per_sentence": 12,
}  # fmt: skip


def _shrink(dataset: datasets.Dataset) -> datasets.Dataset:
    return dataset.map(lambda row: {"images": [im.convert("RGB").resize((72, 72)) for im in row["images"]]})


@pytest.fixture(scope="module")
def splits() -> dict[str, datasets.Dataset]:
    demo = load_builder("demo")
    return {
        "train": _shrink(demo["train"].select(range(8))),
        "validation": _shrink(demo["validation"].select(range(2))),
        "test": _shrink(demo["test"].select(range(3))),
    }


def tiny_config(**sections):
    data = {
        "method": "coatt",
        "model": dict(TINY_MODEL),
        "recipe_options": {"tag_source": "words", "max_tags": 20},
        "data": {"augment": False},
        "tokenizer": {"cleaner": "alphabetic", "min_count": 1},
        "image_processor": IMAGE_PROCESSOR,
        "optimizer": {"lr_visual": 2e-3, "lr_rest": 3e-3, "weight_decay": 0.0},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 2, "batch_size": 8, "eval_batch_size": 8, "patience": None, "seed": 0,
                     "clip_grad_value": None, "max_grad_norm": 1.0},
        "evaluation": {"protocol": "default", "val_metrics": ["bleu"], "test_metrics": ["bleu"]},
        "generation": {"num_beams": 2},
    }  # fmt: skip
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data)


@pytest.fixture(scope="module")
def run(splits, tmp_path_factory) -> dict:
    """`tags` alone, then `--resume` (train), recording the tensors of every training forward."""
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("coatt_run")
    config = tiny_config()
    run_training(config, folder, datasets=splits, stages=["tags"])
    tags_written = (folder / "tags.json").stat().st_mtime_ns
    forward, calls = CoAttForConditionalGeneration.forward, []

    @functools.wraps(forward)
    def spy(model, *args, **kwargs):
        calls.append({k: v for k, v in kwargs.items() if torch.is_tensor(v)})
        return forward(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CoAttForConditionalGeneration, "forward", spy)
        results = run_training(config, folder, resume=True, datasets=splits)
    return {"dir": folder, "results": results, "calls": calls, "tags_written": tags_written}


def test_recipe_builds_tags_then_trains_with_them(run, splits) -> None:
    folder = run["dir"]
    assert (folder / "tags.json").stat().st_mtime_ns == run["tags_written"]  # resume kept the tags stage
    vocabulary = TagVocabulary.load(folder / "tags.json")
    assert len(vocabulary) == 20 and vocabulary == build_tag_vocabulary(splits["train"], "words", max_tags=20)
    assert run["results"]["tags"]["num_tags"] == 20
    expected = sorted(vocabulary.multi_hot(list(splits["train"])).tolist())
    assert len(run["calls"]) == 2  # 2 epochs x one batch of 8
    for call in run["calls"]:
        assert sorted(call["tag_labels"].tolist()) == expected
    model = CoAttForConditionalGeneration.from_pretrained(folder / "model")
    tokenizer = RRGTokenizer.from_pretrained(folder / "model")
    assert model.config.num_tags == 20 and model.config.sentence_end_token_id == tokenizer.convert_tokens_to_ids(".")
    assert tokenizer.cleaner == "alphabetic"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["recipe"]["tag_source"] == "words" and "bleu_4" in metrics["test"]
    records = [json.loads(line) for line in (folder / "logs" / "train_steps.jsonl").read_text().splitlines()]
    for record in records:
        assert all(record[k] >= 0 for k in ("tag_loss", "stop_loss", "word_loss", "regularization_loss"))


def test_config_mistakes_are_named(splits, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tag_source must be one of"):
        run_training(tiny_config(recipe_options={"tag_source": "labels"}), tmp_path / "a", datasets=splits)
    with pytest.raises(ConfigError, match="model.num_tags is 7 but the tag vocabulary has 20 tags"):
        run_training(tiny_config(model={"num_tags": 7}), tmp_path / "b", datasets=splits)
    with pytest.raises(FileNotFoundError, match="run the tags stage first"):
        run_training(tiny_config(), tmp_path / "c", datasets=splits, stages=["train"])


def test_shipped_configs_hold_the_papers_settings() -> None:
    iu, r2gen_split, peir, demo = (
        load_config(f"coatt_{name}") for name in ("iu_xray", "iu_xray_r2gen_split", "peir_gross", "demo")
    )
    m = iu.model
    assert (m["visual_backbone"], m["hidden_size"], m["embedding_size"], m["num_semantic_tags"]) == ("vgg19", 512, 512, 10)
    assert m["stop_threshold"] == 0.5 and m["attention"] == "co" and iu.recipe_options["tag_source"] == "mti"
    assert (iu.tokenizer.cleaner, iu.tokenizer.max_words) == ("alphabetic", 1000)
    assert iu.data.builder_kwargs["split_counts"] == [500, 500]
    assert iu.data.builder_kwargs["report_section"] == "impression+findings"
    assert "split_counts" not in r2gen_split.data.builder_kwargs and "annotation_file" in r2gen_split.data.builder_kwargs
    assert (peir.data.builder, peir.recipe_options["tag_source"], peir.recipe_options["max_tags"]) == ("peir_gross", "words", 1000)
    assert peir.model["max_sentences"] == 1 and peir.image_processor["max_views"] == 1
    assert demo.data.builder == "demo" and demo.model["visual_pretrained"] is False


def test_export_loads_without_hf_rrg_and_generates_the_same(run, splits, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from hf_rrg.hub import export_model

    out = export_model(run["dir"], tmp_path / "export", repo_id="hf-rrg-test/coatt-tiny")
    for name in ("modeling_coatt.py", "configuration_coatt.py", "visual_extractor.py"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "CoAtt (co-attention + hierarchical LSTM)" in card and "- tag source: words" in card
    assert "| hidden / embedding size | 32 / 32 |" in card and "| tags / semantic tags used | 20 / 4 |" in card
    images = []
    for i, study in enumerate(splits["test"]["images"]):
        images.append([])
        for v, image in enumerate(study):
            images[-1].append(str(tmp_path / f"study{i}_{v}.png"))
            image.save(images[-1][-1])
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    inputs = processor(images=images)
    with torch.no_grad():
        beam = model.generate(**inputs).tolist()
        greedy = model.generate(**inputs, num_beams=1).tolist()
    code = f"""
import json, torch
from transformers import AutoModelForImageTextToText, AutoProcessor
out, images = {str(out)!r}, {images!r}
model = AutoModelForImageTextToText.from_pretrained(out, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
inputs = processor(images=images)
with torch.no_grad():
    beam = model.generate(**inputs).tolist()
    greedy = model.generate(**inputs, num_beams=1).tolist()
print(json.dumps({{"module": type(model).__module__, "beam": beam, "greedy": greedy}}))
"""
    remote = run_without_hf_rrg(code, tmp_path)
    assert remote["module"].startswith("transformers_modules.")
    assert remote["beam"] == beam and remote["greedy"] == greedy
