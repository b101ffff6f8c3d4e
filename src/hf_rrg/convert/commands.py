"""`hf-rrg convert METHOD CHECKPOINT --annotation ANNOTATION.json --out DIR`: the authors' weights as an hf-rrg
Hub folder; `hf-rrg predict --model DIR --dataset NAME --out FILE`: its reports of a dataset split, for `evaluate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..hub.commands import add_export_options
from .releases import DATASETS, METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official R2Gen / R2GenCMN / XProNet / ITHN checkpoint into a Hub-ready hf-rrg folder",
        description="Read the authors' checkpoint (tensors only: torch.load weights_only), rebuild the official "
        "vocabulary from the annotation file the model was trained with, map every tensor into the hf-rrg model "
        "and write the folder `hf-rrg export` writes (weights, configs, tokenizer, processor, code, model card "
        "with the provenance). Generate with `hf-rrg generate --model DIR image.png`.",
    )
    parser.add_argument("method", choices=METHODS, help="the method the checkpoint was trained with")
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="the official .pth file")
    parser.add_argument("--annotation", type=Path, required=True, metavar="ANNOTATION.json",
                        help="the annotation file the model was trained with (its train split builds the vocabulary)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write (must be empty or new)")
    parser.add_argument("--dataset", choices=DATASETS, default="iu_xray",
                        help="the dataset of the checkpoint: report cleaning, vocabulary threshold, report length, "
                        "views per study (default iu_xray)")
    parser.add_argument("--labels", type=Path, metavar="LABELS.json",
                        help="XProNet: label file (`hf-rrg xpronet labels`) giving the label slots' names and the "
                        "train-split prior of the label head the official model lacks")
    parser.add_argument("--prototypes", type=Path, metavar="FILE",
                        help="XProNet: a prototype matrix (.safetensors from `hf-rrg xpronet init-prototypes`, or the "
                        "official init_prototypes.pt) for a checkpoint saved without its prototypes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting the checkpoint cannot tell, e.g. --set generation.num_beams=2 --set "
                        "tokenizer.min_count=10 --set image_processor.max_views=1 (repeatable)")
    parser.add_argument("--backbone-only", action="store_true",
                        help="ITHN: write the plain backbone (R2GenCMN / XProNet) without ITHN's training heads")
    add_export_options(parser)
    parser.set_defaults(func=_convert)

    predict = subparsers.add_parser(
        "predict",
        help="write the reports of a dataset split with a saved or converted model (JSONL for `hf-rrg evaluate`)",
        description="Generate a report for every study of a split with the model folder's generation settings and "
        "write `id`, `prediction`, `reference` per line; score it with `hf-rrg evaluate FILE --protocol r2gen`.",
    )
    predict.add_argument("--model", type=Path, required=True, metavar="DIR", help="model folder (converted/exported)")
    predict.add_argument("--dataset", required=True, help="builder name (iu_xray, mimic_cxr, demo, ...)")
    predict.add_argument("--data-dir", type=Path, help="folder holding the dataset's source data")
    predict.add_argument("--split", default="test", help="train, validation or test (default test)")
    predict.add_argument("--out", type=Path, required=True, metavar="FILE", help="JSONL file to write")
    predict.add_argument("--labels", type=Path, metavar="LABELS.json",
                         help="XProNet: give the reference reports' labels (the paper's protocol) from this label file")
    predict.add_argument("--num-beams", type=int, help="beam size (default: the model's generation_config.json)")
    predict.add_argument("--max-new-tokens", type=int, help="longest report (default: the model's)")
    predict.add_argument("--batch-size", type=int, default=8, help="studies generated together (default 8)")
    predict.add_argument("--limit", type=int, help="only the first N studies (trials)")
    predict.add_argument("--device", help="cpu, cuda, cuda:1, ... (default cpu)")
    predict.set_defaults(func=_predict)


def _convert(args: argparse.Namespace) -> int:
    from .writer import convert_checkpoint

    try:
        out = convert_checkpoint(
            args.method, args.checkpoint, args.annotation, args.out, dataset=args.dataset, labels=args.labels,
            prototypes=args.prototypes, overrides=args.overrides, backbone_only=args.backbone_only,
            model_name=args.model_name, repo_id=args.repo_id, license=args.license, overwrite=args.overwrite,
        )  # fmt: skip
    except FileExistsError as error:
        raise ValueError(str(error)) from error
    print(f"Converted {args.checkpoint} ({args.method}, {args.dataset}) -> {out}")
    print(f"Generate a report: hf-rrg generate --model {out} IMAGE.png")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .predict import predict_split

    overrides = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens}
    out = predict_split(
        args.model, args.dataset, args.out, data_dir=args.data_dir, split=args.split, labels=args.labels,
        batch_size=args.batch_size, limit=args.limit, device=args.device,
        generate_kwargs={key: value for key, value in overrides.items() if value is not None},
    )  # fmt: skip
    lines = sum(1 for _ in out.open(encoding="utf-8"))
    print(f"Wrote {lines} reports of {args.dataset}/{args.split} to {out}")
    print(f"Score them: hf-rrg evaluate {out} --protocol r2gen --tokenizer {args.model} --max-seq-length N")
    return 0
