"""`transformers.Seq2SeqTrainer(predict_with_generate=True)` trains an hf-rrg model with hf-rrg's collator
(`include_index=False`: every batch key reaches the model and `generate`) and generates what it learned."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch

MAX_LEN = 10


@pytest.mark.slow
def test_seq2seq_trainer_memorises_two_reports_and_generates_them(tmp_path: Path) -> None:
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from hf_rrg.data import load_builder
    from hf_rrg.data.collators import IndexedStudies, ReportGenerationCollator
    from hf_rrg.modeling.image_processing_rrg import RRGImageProcessor
    from hf_rrg.modeling.tokenization_rrg import RRGTokenizer
    from hf_rrg.training import config_from_dict
    from hf_rrg.training.run_setup import build_model

    torch.set_num_threads(2)
    two = load_builder("demo")["train"].select(range(2))
    two = two.map(lambda row: {"images": [im.convert("RGB").resize((72, 72)) for im in row["images"]]})
    tokenizer = RRGTokenizer.from_reports(list(two["report"]), cleaner="r2gen_iu_xray", min_count=1)
    processor = RRGImageProcessor(eval_size=64, resize_shorter=72, crop_size=64, max_views=1)
    config = config_from_dict({"method": "r2gencmn", "model": {
        "visual_backbone": "test_resnet", "visual_pretrained": False, "d_model": 32, "d_ff": 64, "num_layers": 1,
        "num_heads": 4, "max_seq_length": MAX_LEN, "cmm_size": 16, "cmm_dim": 32, "topk": 4, "dropout": 0.0}})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config, tokenizer, processor, load_backbone=False)
    collator = ReportGenerationCollator(processor, tokenizer, max_length=MAX_LEN, include_index=False)
    assert "index" not in collator([IndexedStudies(two)[0]])
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=2, max_steps=60,
        learning_rate=3e-3, lr_scheduler_type="constant", weight_decay=0.0, warmup_steps=0, logging_steps=10,
        predict_with_generate=True, generation_num_beams=1, generation_max_length=MAX_LEN,
        remove_unused_columns=False, report_to=[], use_cpu=True, save_strategy="no", seed=0,
    )  # fmt: skip
    train = IndexedStudies(datasets.concatenate_datasets([two] * 2))
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train, data_collator=collator)
    trainer.train()
    losses = [record["loss"] for record in trainer.state.log_history if "loss" in record]
    assert losses[-1] < 0.1 * losses[0], losses
    predicted = trainer.predict(IndexedStudies(two))
    texts = tokenizer.batch_decode(predicted.predictions.clip(min=0).tolist(), skip_special_tokens=True)
    expected = [tokenizer.normalize_report(report, max_tokens=MAX_LEN - 1) for report in two["report"]]
    # the model learned the first MAX_LEN - 1 words of each report (R2Gen's truncation): it writes them back
    assert [tokenizer.normalize_report(text, max_tokens=MAX_LEN - 1) for text in texts] == expected
