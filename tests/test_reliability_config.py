"""Training configs that would train silently wrong are refused when the config is read, naming the key.

Issue 16: negative / NaN / infinite learning rates, typos inside `model:` and `image_processor:`, a config without
`method:`, another method's options, metric-name typos found only after an epoch, an empty file, `num_beams: 0`, a
Latin-1 file.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from hf_rrg.cli import main
from hf_rrg.training.config import ConfigError, config_from_dict, load_config, packaged_config_dir

BASE = yaml.safe_load((packaged_config_dir() / "r2gencmn_demo.yaml").read_text(encoding="utf-8"))


def _with(**changes: object) -> dict:
    """The shipped r2gencmn_demo config with `section.key=value` changes (a value None deletes the key)."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *sections, key = dotted.split("__")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return data


def test_every_shipped_config_still_loads():
    names = sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))
    assert len(names) >= 25
    for name in names:
        load_config(name)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("optimizer__lr_rest", -1e-4, r"optimizer\.lr_rest must be >= 0"),
        ("optimizer__lr_visual", float("nan"), r"optimizer\.lr_visual must be a finite number, got nan"),
        ("optimizer__lr_rest", float("inf"), r"optimizer\.lr_rest must be a finite number, got inf"),
        ("optimizer__weight_decay", -5e-5, r"optimizer\.weight_decay must be >= 0"),
        ("optimizer__weight_decay", "nan", r"optimizer\.weight_decay must be a finite number"),
        ("optimizer__betas", [0.9, 1.5], r"optimizer\.betas\[1\] must be in \[0, 1\)"),
        ("scheduler__gamma", 0, r"scheduler\.gamma must be > 0"),
        ("training__clip_grad_value", -0.1, r"training\.clip_grad_value must be > 0 or null"),
        ("training__seed", -3, r"training\.seed must be in \[0, 4294967295\]"),
        ("training__patience", 0, r"training\.patience must be >= 1 or null"),
        ("model__dropout", float("nan"), r"model\.dropout must be a finite number"),
        ("generation__num_beams", 0, r"generation\.num_beams must be >= 1"),
    ],
)
def test_bad_numbers_are_refused(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_with(**{key: value}))


def test_typos_inside_model_and_image_processor_are_refused_with_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['model\.d_modle'\] for method 'r2gencmn'.*'d_model'"):
        config_from_dict(_with(model__d_modle=64))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['image_processor\.eval_sise'\].*'eval_size'"):
        config_from_dict(_with(image_processor__eval_sise=64))
    with pytest.raises(ConfigError, match=r"model\.vocab_size is set from the tokenizer"):
        config_from_dict(_with(model__vocab_size=5000))


def test_another_methods_options_are_refused():
    with pytest.raises(ConfigError, match=r"\['model\.prototype_top_k', 'model\.contrastive_margin'\] for method 'r2gencmn'"):
        config_from_dict(_with(model__prototype_top_k=15, model__contrastive_margin=0.4))
    ithn = yaml.safe_load((packaged_config_dir() / "ithn_demo.yaml").read_text(encoding="utf-8"))
    ithn["model"]["backbone_config"]["rm_num_slots"] = 3  # an R2Gen option in an R2GenCMN backbone
    with pytest.raises(ConfigError, match=r"model\.backbone_config\.rm_num_slots.*'r2gencmn'"):
        config_from_dict(ithn)


def test_a_config_without_method_is_an_error():
    with pytest.raises(ConfigError, match="has no `method:`"):
        config_from_dict(_with(method=None))
    with pytest.raises(ConfigError, match=r"method 'r2gencnm' is not an hf-rrg method.*r2gencmn"):
        config_from_dict(_with(method="r2gencnm"))


def test_metric_name_typos_are_found_before_training():
    with pytest.raises(ConfigError, match=r"training\.val_metric 'bleu4' is not a score of evaluation\.val_metrics.*bleu_4"):
        config_from_dict(_with(training__val_metric="bleu4"))
    with pytest.raises(ConfigError, match=r"training\.val_metric 'meteor' is not a score of evaluation\.val_metrics"):
        config_from_dict(_with(training__val_metric="meteor"))  # METEOR is a test metric in this config
    with pytest.raises(ConfigError, match=r"evaluation\.test_metrics has unknown metric\(s\) \['rouge'\]"):
        config_from_dict(_with(evaluation__test_metrics=["bleu", "rouge"]))
    with pytest.raises(ConfigError, match=r"evaluation\.val_metrics has unknown metric\(s\) \['BLEU'\]"):
        config_from_dict(_with(evaluation__val_metrics=["BLEU"]))
    config_from_dict(_with(training__val_metric="cider_d"))  # a real score of a chosen family


def test_empty_and_non_utf8_config_files_name_the_file(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yaml is empty"):
        load_config(empty)
    assert main(["train", str(empty), "--output-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hf-rrg train: error:") and "empty.yaml is empty" in err and not (tmp_path / "run").exists()

    latin = tmp_path / "latin.yaml"
    latin.write_bytes(yaml.safe_dump(_with(data__builder_kwargs={"note": "Radiologie générale"}), allow_unicode=True).encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.yaml is not UTF-8 text.*byte 0xe9 at line \d+.*UTF-8"):
        load_config(latin)


def test_num_beams_zero_in_a_config_is_a_clear_cli_error(tmp_path, capsys):
    assert main(["train", "r2gencmn_demo", "--set", "generation.num_beams=0", "--output-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "hf-rrg train: error:" in err and "generation.num_beams must be >= 1" in err
    assert "Traceback" not in err
