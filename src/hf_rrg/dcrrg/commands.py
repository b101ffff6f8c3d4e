"""`hf-rrg dcrrg inspect | retrieval | classify`: DCRRG's intermediate outputs (the paper's Table 7), DCCLIP's
retrieval and AUROC evaluation (§4.4.2, Tables 2 and 6) and its image classification (§4.4.3, Table 3)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..command_groups import command_group


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `dcrrg` command group to the `hf-rrg` parser."""
    commands = command_group(subparsers, "dcrrg", "DCRRG: per-observation inspection, DCCLIP retrieval / AUROC")
    inspect = commands.add_parser(
        "inspect",
        help="per-observation probability and generated description of an image (Table 7)",
        description="Run a DCRRG model on one study: each observation's probability from the step-1 image heads, "
        "its generated description (step 3, description mode) and the full report.",
    )
    inspect.add_argument("images", nargs="+", help="image file(s) of one study (PNG, JPEG, DICOM)")
    inspect.add_argument("--model", required=True, type=Path, help="a DCRRG model folder (e.g. RUN_DIR/model)")
    inspect.add_argument("--describe-model", type=Path, default=None,
                         help="model for the descriptions (default --model; use RUN_DIR/describe/model for the "
                         "step-3 decoder when --model is the step-4 model)")  # fmt: skip
    inspect.add_argument("--num-beams", type=int, default=3, help="beam size (Appendix A: 3)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(func=run_inspect)

    retrieval = commands.add_parser(
        "retrieval",
        help="image->text Precision@{1,2,5,10} on a 5xN set and per-observation AUROC of the step-1 heads",
        description="Build a CheXpert-5x200-style set from a labelled dataset split (samples positive for exactly "
        "one of five observations), rank its reports for each image by DCCLIP similarity and report Precision@K; "
        "also the AUROC of each observation's image head over the whole split.",
    )
    retrieval.add_argument("dataset", help="builder name (demo, iu_xray, mimic_cxr, ...)")
    retrieval.add_argument("--model", required=True, type=Path, help="a DCRRG model folder")
    retrieval.add_argument("--data-dir", default=None, help="folder holding the source data")
    retrieval.add_argument("--split", default="test")
    retrieval.add_argument("--per-class", type=int, default=200, help="images per class (the paper: 200)")
    retrieval.add_argument("--batch-size", type=int, default=16)
    retrieval.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    retrieval.set_defaults(func=run_retrieval)
    register_classify(commands)


def register_classify(commands: argparse._SubParsersAction) -> None:
    """`hf-rrg dcrrg classify`: Table 3."""
    classify = commands.add_parser(
        "classify",
        help="DCCLIP image classification (Table 3): linear probe or fine-tuning, AUROC per observation",
        description="Train a linear layer on DCCLIP's image encoder (--mode linear-probe: encoder frozen) or the "
        "encoder and the layer together (--mode fine-tune) to predict each observation, on --train-fraction of a "
        "labelled dataset's train split (labels from hf-rrg's CheXpert labeler on the reports; uncertain ones left "
        "out), through hf-rrg's training engine; keep the epoch with the best mean validation AUROC; score the test "
        "split. Repeats --runs times and writes OUT/table3.json and OUT/table3.md (AUROC per observation, per run "
        "and their mean), each run's predictions.jsonl, classifier weights, logs and checkpoints in OUT/run<k>/.",
    )
    classify.add_argument("model", type=Path, metavar="RUN_OR_MODEL",
                          help="a DCRRG run folder (its pretrain/model: DCCLIP after steps 1-2) or a DCRRG model "
                          "folder")  # fmt: skip
    classify.add_argument("--mode", required=True, choices=["linear-probe", "fine-tune"])
    classify.add_argument("--builder", required=True, help="labelled dataset: builder name (demo, mimic_cxr, "
                          "iu_xray, report_folder, ...)")  # fmt: skip
    classify.add_argument("--data-dir", default=None, help="folder holding the source data")
    classify.add_argument("--config", default=None, help="named builder config")
    classify.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder option (repeatable)")
    classify.add_argument("--train-fraction", type=float, default=1.0,
                          help="share of the train split per run (Table 3: 0.01, 0.1, 1; default 1)")  # fmt: skip
    classify.add_argument("--runs", type=int, default=5, help="runs averaged (the paper: 5)")
    classify.add_argument("--epochs", type=int, default=10, help="epochs per run (paper silent; default 10)")
    classify.add_argument("--batch-size", type=int, default=32, help="batch size (paper silent; default 32)")
    classify.add_argument("--lr", type=float, default=None,
                          help="AdamW learning rate (default 1e-3 linear probe, 1e-4 fine-tune)")  # fmt: skip
    classify.add_argument("--weight-decay", type=float, default=1e-6, help="AdamW weight decay (default 1e-6)")
    classify.add_argument("--init", choices=["model", "random", "imagenet"], default="model",
                          help="the model's image encoder, or the Random / ImageNet rows (same backbone)")  # fmt: skip
    classify.add_argument("--observations", default=None,
                          help="comma-separated observations to classify (default: the model's 14)")  # fmt: skip
    classify.add_argument("--seed", type=int, default=0, help="run k uses seed + k")
    classify.add_argument("--out", type=Path, default=None,
                          help="output folder (default for a run: RUN_DIR/table3/<mode>-<percent>pct)")  # fmt: skip
    classify.add_argument("--resume", action="store_true", help="continue the runs already in --out")
    classify.add_argument("--quiet", action="store_true", help="no progress bars")
    classify.set_defaults(func=run_classify)


def _load_model(folder: Path) -> Any:
    from ..modeling.modeling_dcrrg import DCRRGForConditionalGeneration

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved DCRRG model folder (no config.json)")
    return DCRRGForConditionalGeneration.from_pretrained(str(folder)).eval()


def _load(folder: Path) -> tuple[Any, Any]:
    from ..modeling.processing_rrg import RRGProcessor

    return _load_model(folder), RRGProcessor.from_pretrained(str(folder))


def inspect_study(model: Any, processor: Any, images: list[Any], describe_model: Any = None,
                  num_beams: int = 3) -> dict[str, Any]:  # fmt: skip
    """{"observations": [{"observation", "probability", "description"}...], "report": ...} for one study."""
    import torch

    describe_model = describe_model or model
    inputs = processor(images=[images])
    names = model.config.observation_names

    def image_features(net: Any) -> torch.Tensor:
        return net.encoder.dcclip.encode_image(inputs["pixel_values"], inputs.get("view_mask"))

    with torch.no_grad():  # each model's CNN reads the study once; its features serve every prompt
        features = image_features(model)
        full_report = model.encoder.from_features(features, None)
        probabilities = model.observation_probabilities(encoder_outputs=full_report)[0].tolist()
        if describe_model is not model:
            features = image_features(describe_model)
        prompts = torch.arange(len(names), device=features.device).unsqueeze(1)
        described = describe_model.encoder.from_features(features.expand(len(names), -1), prompts)
        descriptions = describe_model.generate(encoder_outputs=described, num_beams=num_beams,
                                               max_length=describe_model.config.description_max_length)  # fmt: skip
        report = model.generate(encoder_outputs=full_report, num_beams=num_beams)
    texts = processor.batch_decode(descriptions, skip_special_tokens=True)
    return {
        "observations": [{"observation": n, "probability": round(p, 4), "description": t}
                         for n, p, t in zip(names, probabilities, texts)],  # fmt: skip
        "report": processor.batch_decode(report, skip_special_tokens=True)[0],
    }


def run_inspect(args: argparse.Namespace) -> int:
    model, processor = _load(args.model)
    describe = _load_model(args.describe_model) if args.describe_model else None
    result = inspect_study(model, processor, [str(p) for p in args.images], describe, args.num_beams)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    width = max(len(row["observation"]) for row in result["observations"])
    print(f"{'Observation':<{width}}  Probability  Observation description")
    for row in result["observations"]:
        print(f"{row['observation']:<{width}}  {row['probability']:>11.2f}  {row['description']}")
    print(f"\nReport: {result['report']}")
    return 0


def retrieval_scores(model: Any, processor: Any, split: Any, per_class: int = 200, batch_size: int = 16,
                     progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Precision@{1,2,5,10} (image->text, 5xN set) and per-observation AUROC of the image heads on `split`."""
    import torch

    from .observations import label_reports, label_tensor
    from .retrieval import FIVE_OBSERVATIONS, five_by_n_set, observation_auroc, precision_at_k

    names = model.config.observation_names
    reports = list(split["report"])
    labels = label_tensor(label_reports(reports, names, progress=progress))
    dcclip, zero = model.dcclip, model.config.num_observations
    probabilities, image_embeds, text_embeds = [], [], []
    with torch.no_grad():
        for start in range(0, len(reports), batch_size):
            rows = list(range(start, min(start + batch_size, len(reports))))
            inputs = processor(images=[list(split[r]["images"]) for r in rows])  # PIL or undecoded cells alike
            probabilities.append(model.observation_probabilities(**inputs))
            v = dcclip.encode_image(**inputs)
            image_embeds.append(dcclip.project_image(v, torch.full((len(rows), 1), zero))[:, 0])
            text = processor.tokenizer([reports[r] for r in rows], padding=True, truncation=True, max_length=128,
                                       return_tensors="pt")  # fmt: skip
            t = dcclip.encode_text(text["input_ids"], text["attention_mask"])
            text_embeds.append(dcclip.project_text(t, torch.full((len(rows), 1), zero))[:, 0])
    chosen, classes = five_by_n_set(labels, names, per_class=per_class)
    result: dict[str, Any] = {"auroc": observation_auroc(torch.cat(probabilities), labels, names),
                              "five_by_n": {"classes": list(FIVE_OBSERVATIONS), "size": len(chosen)}}  # fmt: skip
    if chosen:
        index = torch.tensor(chosen)
        result["precision"] = precision_at_k(torch.cat(image_embeds)[index], torch.cat(text_embeds)[index],
                                             classes, classes)  # fmt: skip
    return result


def run_retrieval(args: argparse.Namespace) -> int:
    from ..data import load_builder

    model, processor = _load(args.model)
    dataset = load_builder(args.dataset, args.data_dir)
    if args.split not in dataset:
        raise ValueError(f"dataset {args.dataset!r} has no split {args.split!r}; its splits are {list(dataset)}")
    result = retrieval_scores(model, processor, dataset[args.split], args.per_class, args.batch_size)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def classification_sources(path: Path) -> tuple[Path, Path | None, bool]:
    """(model folder, folder holding its processor or None, whether `path` is a run folder). A run folder gives
    its `pretrain/model` (DCCLIP after steps 1-2, what Table 3 evaluates) and the processor of its `model/`."""
    if (path / "pretrain" / "model" / "config.json").is_file():
        final = path / "model"
        return path / "pretrain" / "model", final if (final / "config.json").is_file() else None, True
    if (path / "config.json").is_file():
        return path, path, False
    raise FileNotFoundError(
        f"{path} is neither a DCRRG run folder (no pretrain/model/config.json) nor a model folder (no config.json); "
        "pass RUN_DIR of `hf-rrg train dcrrg_...` or a saved DCRRG model"
    )


def classification_processor(processor_folder: Path | None, run_dir: Path) -> Any:
    """The model's image processor: from its folder, else from the run's `config.yaml` (`image_processor:`)."""
    from ..modeling.image_processing_rrg import RRGImageProcessor
    from ..modeling.processing_rrg import RRGProcessor

    if processor_folder is not None:
        return RRGProcessor.from_pretrained(str(processor_folder)).image_processor
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{run_dir} has neither model/ nor config.yaml: cannot tell which image processor "
                                "its model was trained with")  # fmt: skip
    import yaml

    return RRGImageProcessor(**(yaml.safe_load(config.read_text(encoding="utf-8")).get("image_processor") or {}))


def run_classify(args: argparse.Namespace) -> int:
    from ..data.builders import load_builder
    from ..data.commands import parse_set_options
    from .classification import ClassificationData, ClassificationSettings, classify, labelled_split

    settings = ClassificationSettings(
        mode=args.mode, train_fraction=args.train_fraction, runs=args.runs, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, init=args.init, seed=args.seed,
        progress=not args.quiet,
    )  # fmt: skip
    model_folder, processor_folder, is_run = classification_sources(args.model)
    out = args.out
    if out is None:
        if not is_run:
            raise ValueError("pass --out DIR: the results of a model folder are not written into it")
        out = args.model / "table3" / f"{args.mode}-{args.train_fraction * 100:g}pct"
    model = _load_model(model_folder)
    processor = classification_processor(processor_folder, args.model)
    names = list(model.config.observation_names)
    if args.observations:
        chosen = [name.strip() for name in args.observations.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in names]
        if unknown:
            raise ValueError(f"--observations {unknown} are not observations of this model; choose from {names}")
        names = chosen
    options = parse_set_options(args.set)
    if args.config:
        options["name"] = args.config
    dataset = load_builder(args.builder, args.data_dir, **options)
    for split in ("train", "test"):
        if split not in dataset:
            raise ValueError(f"dataset {args.builder!r} has no {split} split (its splits: {list(dataset)})")
    progress = settings.progress
    data = ClassificationData(
        train=labelled_split(dataset["train"], names, progress),
        validation=labelled_split(dataset["validation"], names, progress) if "validation" in dataset else None,
        test=labelled_split(dataset["test"], names, progress), observations=names, processor=processor,
    )  # fmt: skip
    table = classify(model, data, settings, out, {"model": str(args.model), "dataset": args.builder}, args.resume)
    print(table.markdown())
    print(f"Table 3 ({args.mode}): {out / 'table3.json'}, {out / 'table3.md'}; runs, predictions, weights and logs in "
          f"{out}/run<k>/")  # fmt: skip
    return 0


__all__ = [
    "classification_sources",
    "inspect_study",
    "register",
    "retrieval_scores",
    "run_classify",
    "run_inspect",
    "run_retrieval",
]
