"""`hf-rrg xpronet labels | init-prototypes`: XProNet's pseudo-label file and prototype initialisation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..command_groups import command_group


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `xpronet` command group to the `hf-rrg` parser."""
    commands = command_group(subparsers, "xpronet", "XProNet stages: pseudo labels, prototype initialisation",
                             metavar="STAGE")

    def dataset_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("dataset", help="builder name (iu_xray, mimic_cxr, report_folder, demo, ...)")
        parser.add_argument("--data-dir", default=None, help="folder holding the source data")
        parser.add_argument("--config", default=None, help="named builder config")
        parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder option (repeatable)")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")

    labels = commands.add_parser(
        "labels",
        help="write the per-sample pseudo-label file (14 CheXpert observations, §3.2 Eq. 3)",
        description="Label every report of a dataset with the rule-based CheXpert labeler and write XProNet's "
        "label file (JSON keyed by sample id, slot order with 'No Finding' last; see hf_rrg.xpronet.labels).",
    )
    dataset_arguments(labels)
    labels.add_argument("--out", type=Path, required=True, help="label file to write (.json)")
    labels.add_argument("--uncertain-as-negative", action="store_true",
                        help="count uncertain mentions as absent (default: present, as the official labels)")
    labels.add_argument("--no-fallback", action="store_true",
                        help="leave samples without a positive label empty (default: set 'No Finding')")
    labels.add_argument("--impression-only", action="store_true", help="label only the IMPRESSION section")
    labels.set_defaults(func=run_labels)

    init = commands.add_parser(
        "init-prototypes",
        help="K-means prototype matrix from image + report features (§3.2 Eq. 4-7), written as safetensors",
        description="Extract global image features (and of the horizontally flipped images) with a timm backbone "
        "and report features with a Hugging Face text encoder over the training split, run K-means per class, "
        "and write the prototype matrix PM (N_l, N_p, C1 + C2) as safetensors.",
    )
    dataset_arguments(init)
    init.add_argument("--labels", type=Path, required=True, help="label file from `hf-rrg xpronet labels`")
    init.add_argument("--text-encoder", required=True, help="Hugging Face encoder id or local folder (e.g. BERT)")
    init.add_argument("--text-pooling", choices=("mean", "cls"), default="mean", help="report feature pooling")
    init.add_argument("--out", type=Path, required=True, help="prototype file to write (.safetensors)")
    init.add_argument("--model", type=Path, default=None,
                      help="an XProNet model folder: use its visual backbone, image processor and N_p")
    init.add_argument("--backbone", default="resnet101", help="timm backbone when --model is not given")
    init.add_argument("--no-pretrained", action="store_true", help="do not load ImageNet weights (tests only)")
    init.add_argument("--image-size", type=int, default=224, help="evaluation image size without --model")
    init.add_argument("--max-views", type=int, default=2, help="views per study without --model")
    init.add_argument("--num-prototypes", type=int, default=20, help="N_p per class without --model (even)")
    init.add_argument("--split", default="train", help="split to build the prototypes from (default train)")
    init.add_argument("--limit", type=int, default=None, help="use only the first N samples of the split (trials)")
    init.add_argument("--batch-size", type=int, default=8, help="studies per forward pass (default 8)")
    init.add_argument("--seed", type=int, default=0, help="K-means seed")
    init.add_argument("--device", default="cpu", help="device of the encoders (default cpu)")
    init.set_defaults(func=run_init_prototypes)


def _load_dataset(args: argparse.Namespace):
    from ..data import load_builder
    from ..data.commands import parse_set_options

    options = parse_set_options(args.set)
    if args.config:
        options["name"] = args.config
    return load_builder(args.dataset, args.data_dir, **options)


def run_labels(args: argparse.Namespace) -> int:
    from .labels import format_counts, make_label_file

    dataset = _load_dataset(args)
    label_file = make_label_file(
        dataset,
        uncertain_as_positive=not args.uncertain_as_negative,
        no_positive_slot=None if args.no_fallback else "No Finding",
        impression_only=args.impression_only,
        progress=not args.no_progress,
    )
    path = label_file.write(args.out)
    print(format_counts(label_file))
    print(f"wrote labels of {len(label_file.labels)} samples to {path}")
    return 0


def run_init_prototypes(args: argparse.Namespace) -> int:
    from ..modeling.image_processing_rrg import RRGImageProcessor
    from ..modeling.visual_extractor import VisualExtractor
    from .labels import read_label_file
    from .prototypes import initialize_prototypes, save_prototype_file

    label_file = read_label_file(args.labels)
    dataset = _load_dataset(args)
    if args.split not in dataset:
        raise ValueError(f"dataset {args.dataset!r} has no split {args.split!r}; its splits are {list(dataset)}")
    split = dataset[args.split]
    if args.limit is not None:
        split = split.select(range(min(args.limit, len(split))))
    names, num_prototypes = label_file.observation_names, args.num_prototypes
    if args.model is not None:
        from ..modeling.modeling_xpronet import XProNetForConditionalGeneration

        model = XProNetForConditionalGeneration.from_pretrained(args.model)
        extractor, processor = model.encoder.visual_extractor, RRGImageProcessor.from_pretrained(args.model)
        names, num_prototypes = model.config.observation_names, model.config.num_prototypes_per_class
        backbone = model.config.visual_backbone
    else:
        import torch

        torch.manual_seed(args.seed)  # a backbone without pretrained weights is random: make it the same each run
        extractor, backbone = VisualExtractor(args.backbone), args.backbone
        if not args.no_pretrained:
            extractor.load_pretrained_backbone()
        processor = RRGImageProcessor(eval_size=(args.image_size, args.image_size), max_views=args.max_views)
    result = initialize_prototypes(
        extractor, split, processor, label_file, args.text_encoder, num_prototypes, names,
        args.text_pooling, args.batch_size, args.seed, args.device, progress=not args.no_progress,
    )  # fmt: skip
    settings = {"backbone": backbone, "text_encoder": str(args.text_encoder), "text_pooling": args.text_pooling,
                "seed": args.seed, "split": args.split, "dataset": args.dataset}  # fmt: skip
    path = save_prototype_file(args.out, result, names, settings)
    print(json.dumps({"class_sizes": result.class_sizes, "small_classes": result.small_classes,
                      "empty_classes": result.empty_classes}, indent=1))  # fmt: skip
    print(f"wrote prototype matrix {tuple(result.prototypes.shape)} to {path}")
    return 0
