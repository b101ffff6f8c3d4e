"""Every published config equals the official script it names, field by field.

The table below was read from the official repositories (zhjohnchan/R2Gen, zhjohnchan/R2GenCMN, Markin-Wang/XProNet,
Bhanu068/ITHN): each run script (`train_*.sh` / `run_*.sh`), the argparse defaults it leaves in place
(`main_train.py` / `main.py` / `modules/utils.py`), `modules/optimizers.py` (which Adam arguments are passed) and
`modules/trainer.py` (gradient clipping, early stopping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from hf_rrg.training.config import load_config
from hf_rrg.training.optim import build_optimizer

#: R2Gen's build_optimizer passes neither betas nor eps: PyTorch's Adam defaults.
PYTORCH_ADAM = ((0.9, 0.999), 1e-8)
#: R2GenCMN's main_train.py: --adam_betas (0.9, 0.98), --adam_eps 1e-9 (XProNet's and ITHN's copies keep them).
CMN_ADAM = ((0.9, 0.98), 1e-9)


@dataclass(frozen=True)
class Official:
    """One official run: where it comes from and the values our config must hold."""

    source: str
    lr: tuple[float, float]  # --lr_ve, --lr_ed
    adam: tuple[tuple[float, float], float]  # betas, eps
    step: tuple[int, float]  # StepLR --step_size, --gamma
    epochs: int
    batch_size: int
    seed: int
    clip_value: float | None  # the trainer's clip_grad_value_, None when it does not clip
    early_stop: int  # --early_stop; the trainer stops once not_improved_count > early_stop
    beam: int
    max_seq_length: int
    threshold: int  # --threshold: the vocabulary's minimum word count
    weight_decay: float = 5e-5
    amsgrad: bool = True
    model: dict[str, Any] = field(default_factory=dict)  # method-specific model fields


TRANSFORMER = dict(d_model=512, d_ff=512, num_layers=3, num_heads=8, dropout=0.1)
R2GEN_MODEL = dict(TRANSFORMER, rm_num_slots=3, rm_num_heads=8, rm_d_model=512)
CMN_MODEL = dict(TRANSFORMER, topk=32, cmm_size=2048, cmm_dim=512)
XPRONET_MODEL = dict(
    TRANSFORMER, prototype_top_k=15, num_prototypes_per_class=20, prototype_visual_dim=2048, prototype_text_dim=768,
    contrastive_margin=0.4, contrastive_theta=1.5, visual_contrastive_weight=1.0, text_contrastive_weight=0.1,
)  # fmt: skip  (θ = 1.5: `alpha` of my_con_loss, hard-coded; margins --img/txt_con_margin 0.4; weights 1 / 0.1)

R2GEN_IU = Official("zhjohnchan/R2Gen train_iu_xray.sh", (5e-5, 1e-4), PYTORCH_ADAM, (50, 0.1), 100, 16, 9223, 0.1,
                    50, 3, 60, 3, model=R2GEN_MODEL)  # fmt: skip
R2GEN_MIMIC = Official("zhjohnchan/R2Gen train_mimic_cxr.sh", (5e-5, 1e-4), PYTORCH_ADAM, (1, 0.8), 30, 16, 456789,
                       0.1, 50, 3, 100, 10, model=R2GEN_MODEL)  # fmt: skip
CMN_IU = Official("zhjohnchan/R2GenCMN train_iu_xray.sh", (1e-4, 5e-4), CMN_ADAM, (10, 0.8), 100, 16, 7580, None, 50,
                  3, 60, 3, model=CMN_MODEL)  # fmt: skip
CMN_MIMIC = Official("zhjohnchan/R2GenCMN train_mimic_cxr.sh", (1e-4, 5e-4), CMN_ADAM, (3, 0.8), 30, 16, 9153, None,
                     50, 3, 100, 10, model=CMN_MODEL)  # fmt: skip
XPRONET_IU = Official("Markin-Wang/XProNet run_iu_xray.sh", (1e-3, 2e-3), CMN_ADAM, (10, 0.8), 30, 16, 7580, None, 50,
                      3, 60, 3, model=XPRONET_MODEL)  # fmt: skip
XPRONET_MIMIC = Official("Markin-Wang/XProNet run_mimic_cxr.sh (--gamma, --beam_size: defaults 0.8, 3)", (5e-5, 1e-4),
                         CMN_ADAM, (3, 0.8), 30, 64, 7580, None, 50, 3, 100, 10, model=XPRONET_MODEL)  # fmt: skip
ITHN_CMN_IU = Official("Bhanu068/ITHN run_iu_xray.sh", (1e-4, 5e-4), CMN_ADAM, (10, 0.8), 100, 16, 7580, None, 25, 3,
                       60, 3, model=dict(CMN_MODEL, hardness_alpha=0.01))  # fmt: skip
ITHN_CMN_MIMIC = Official("Bhanu068/ITHN run_mimic_cxr.sh (--max_seq_length 60)", (1e-4, 5e-4), CMN_ADAM, (3, 0.8),
                          100, 16, 9153, None, 25, 3, 60, 10, model=dict(CMN_MODEL, hardness_alpha=0.01))  # fmt: skip


def _with_ithn_stop(run: Official, source: str) -> Official:
    """ITHN on XProNet: no official ITHN script exists; XProNet's settings plus ITHN's α and early stop 25."""
    from dataclasses import replace

    return replace(run, source=source, early_stop=25, model=dict(run.model, hardness_alpha=0.01))


OFFICIAL: dict[str, Official] = {
    "r2gen_iu_xray": R2GEN_IU,
    "r2gen_mimic_cxr": R2GEN_MIMIC,
    "r2gencmn_iu_xray": CMN_IU,
    "r2gencmn_mimic_cxr": CMN_MIMIC,
    "xpronet_iu_xray": XPRONET_IU,
    "xpronet_mimic_cxr": XPRONET_MIMIC,
    "ithn_r2gencmn_iu_xray": ITHN_CMN_IU,
    "ithn_r2gencmn_iu_xray_official": ITHN_CMN_IU,
    "ithn_r2gencmn_mimic_cxr": ITHN_CMN_MIMIC,
    "ithn_xpronet_iu_xray": _with_ithn_stop(XPRONET_IU, "XProNet run_iu_xray.sh + ITHN --early_stop 25 --alpha 0.01"),
    "ithn_xpronet_mimic_cxr": _with_ithn_stop(XPRONET_MIMIC, "XProNet run_mimic_cxr.sh + ITHN early stop / α"),
}


def _model_fields(config: Any) -> dict[str, Any]:
    """The model section, with an ITHN backbone's fields lifted next to ITHN's own."""
    model = dict(config.model)
    return {**model, **dict(model.pop("backbone_config", None) or {})}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_published_config_equals_the_official_script(name: str) -> None:
    run = OFFICIAL[name]
    config = load_config(name)
    where = f"{name} vs {run.source}"
    optimizer, loop = config.optimizer, config.training
    assert (optimizer.name, optimizer.amsgrad) == ("adam", run.amsgrad), where
    assert (optimizer.lr_visual, optimizer.lr_rest) == pytest.approx(run.lr), where
    assert optimizer.weight_decay == pytest.approx(run.weight_decay), where
    assert (*optimizer.betas, optimizer.eps) == pytest.approx((*run.adam[0], run.adam[1])), where
    assert (config.scheduler.name, config.scheduler.step_size, config.scheduler.gamma) == ("step", *run.step), where
    assert config.scheduler.warmup_epochs == 0, where
    assert (loop.epochs, loop.batch_size, loop.seed) == (run.epochs, run.batch_size, run.seed), where
    assert loop.clip_grad_value == run.clip_value and loop.max_grad_norm is None, where
    assert loop.gradient_accumulation_steps == 1 and loop.val_metric == "bleu_4", where
    # the official trainers stop once `not_improved_count > early_stop`; ours once the count reaches `patience`
    assert loop.patience == run.early_stop + 1, where
    # the official beam search writes up to max_seq_length words after <bos> (<eos> included)
    assert (config.generation.num_beams, config.generation.max_new_tokens) == (run.beam, run.max_seq_length), where
    assert config.tokenizer.min_count == run.threshold, where
    dataset = "mimic_cxr" if "mimic" in name else "iu_xray"  # R2Gen's per-dataset report cleaning (tokenizers.py)
    assert (config.data.builder, config.tokenizer.cleaner) == (dataset, f"r2gen_{dataset}"), where
    model = _model_fields(config)
    assert model["max_seq_length"] == run.max_seq_length, where
    for key, value in run.model.items():
        assert model.get(key) == pytest.approx(value), f"{where}: model.{key}"


@pytest.mark.parametrize("name, betas, eps", [("r2gen_iu_xray", (0.9, 0.999), 1e-8), ("r2gencmn_iu_xray", (0.9, 0.98), 1e-9)])
def test_the_optimizer_is_built_with_the_configs_betas_and_eps(name: str, betas: tuple, eps: float) -> None:
    layer = torch.nn.Linear(2, 2)
    model = torch.nn.Module()
    model.visual_extractor, model.head = torch.nn.Linear(2, 2), layer
    optimizer = build_optimizer(model, load_config(name).optimizer)
    for group in optimizer.param_groups:
        assert (group["betas"], group["eps"], group["amsgrad"]) == (betas, eps, True)


@pytest.mark.parametrize(
    "name, preset",
    [("ithn_r2gencmn_iu_xray_official", "official"), ("ithn_r2gencmn_iu_xray", "paper"),
     ("ithn_r2gencmn_mimic_cxr", "paper"), ("ithn_xpronet_iu_xray", "paper"), ("ithn_xpronet_mimic_cxr", "paper")],
)  # fmt: skip
def test_ithn_configs_hold_their_preset(name: str, preset: str) -> None:
    from hf_rrg.modeling.configuration_ithn import ITHN_PRESETS, ITHNConfig

    model = ITHNConfig(**load_config(name).model)
    assert {key: getattr(model, key) for key in ITHN_PRESETS[preset]} == ITHN_PRESETS[preset]
