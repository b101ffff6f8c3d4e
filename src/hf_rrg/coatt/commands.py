"""`hf-rrg coatt tags | tag-recall`: CoAtt's MLC tag vocabulary from a dataset's training split, and its tag
prediction scored as the paper's Table 3 (recall@k)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..command_groups import command_group
from ..data.commands import add_split_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `coatt` command group to the `hf-rrg` parser."""
    commands = command_group(subparsers, "coatt", "CoAtt: the tag vocabulary of its multi-label classifier, tag recall")
    tags = commands.add_parser(
        "tags",
        help="build the MLC tag vocabulary (IU X-Ray MTI tags, MeSH terms or report words) and print its size",
        description="Count the tags of every example of a split (once per example) and write the vocabulary as "
        "JSON, most frequent first. IU X-Ray's MTI tags need the NLM reports: `hf-rrg coatt tags iu_xray "
        "--data-dir DIR --config nlm --set images_required=false`.",
    )
    tags.add_argument("dataset", help="builder name (iu_xray, peir_gross, report_folder, demo, ...)")
    tags.add_argument("--data-dir", default=None, help="folder holding the source data")
    tags.add_argument("--config", default=None, help="named builder config (iu_xray: nlm for MTI tags)")
    tags.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder option (repeatable)")
    tags.add_argument("--source", choices=("mti", "mesh", "words"), default="mti", help="where tags come from")
    tags.add_argument("--split", default="train", help="split to count (default train); 'all' = every split")
    tags.add_argument("--max-tags", type=int, default=None, help="keep the most frequent N tags")
    tags.add_argument("--min-count", type=int, default=1, help="keep tags of at least N examples")
    tags.add_argument("--keep-case", action="store_true", help="do not merge case variants of MTI/MeSH tags")
    tags.add_argument("--cleaner", default="alphabetic", help="cleaning preset for --source words")
    tags.add_argument("--out", type=Path, default=None, help="vocabulary file to write (.json)")
    tags.set_defaults(func=run_tags)

    recall = commands.add_parser(
        "tag-recall",
        help="Table 3: recall@k of the MLC's predicted tags on a labelled split",
        description="Predict every study's tags with a trained CoAtt model and score recall@k against the tags of "
        "the split (the vocabulary's source column: MTI tags, MeSH terms or report words), as the paper's Table 3.",
    )
    recall.add_argument("model", help="a CoAtt run folder (model/ + tags.json) or a model folder (then --tags)")
    recall.add_argument("dataset", help="builder name (iu_xray, peir_gross, demo, ...)")
    add_split_arguments(recall, "test", "named builder config (iu_xray: nlm for MTI tags)")
    recall.add_argument("--tags", type=Path, default=None, help="the run's tag vocabulary (default RUN/tags.json)")
    recall.add_argument("--k", type=int, nargs="+", default=[5, 10, 20], help="k values (Table 3: 5 10 20)")
    recall.add_argument("--batch-size", type=int, default=16, help="studies per forward pass")
    recall.add_argument("--max-samples", type=int, default=None, help="score the first N studies only")
    recall.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    recall.add_argument("--out", type=Path, default=None, help="JSON file to write the scores to")
    recall.set_defaults(func=run_tag_recall)


def run_tags(args: argparse.Namespace) -> int:
    from itertools import chain

    from ..data import load_builder
    from ..data.commands import parse_set_options
    from .tags import build_tag_vocabulary

    options = parse_set_options(args.set)
    if args.config:
        options["name"] = args.config
    dataset = load_builder(args.dataset, args.data_dir, **options)
    if args.split == "all":
        examples = chain.from_iterable(dataset[name] for name in dataset)
    elif args.split in dataset:
        examples = dataset[args.split]
    else:
        raise ValueError(f"dataset {args.dataset!r} has no split {args.split!r}; its splits are {list(dataset)}")
    vocabulary = build_tag_vocabulary(
        examples, args.source, min_count=args.min_count, max_tags=args.max_tags, lowercase=not args.keep_case,
        cleaner=args.cleaner,
    )  # fmt: skip
    top = ", ".join(f"{tag} ({vocabulary.counts[tag]})" for tag in vocabulary.tags[:10])
    print(f"{len(vocabulary)} {args.source} tags in split {args.split!r} of {args.dataset}; most frequent: {top}")
    if args.out is not None:
        print(f"wrote {vocabulary.save(args.out)}")
    return 0


def run_tag_recall(args: argparse.Namespace) -> int:
    import json

    from ..data.commands import load_split
    from .evaluation import evaluate_tag_recall, resolve_model_and_tags

    model_dir, vocabulary = resolve_model_and_tags(args.model, args.tags)
    examples = load_split(args.dataset, args.data_dir, args.config, args.set, args.split)
    if args.max_samples is not None:
        examples = examples.select(range(min(args.max_samples, len(examples))))
    result = evaluate_tag_recall(model_dir, vocabulary, examples, args.k, args.batch_size, args.device)
    result.update(model=str(model_dir), dataset=args.dataset, split=args.split)
    scores = "  ".join(f"R@{k} {result[f'recall@{k}']:.3f}" for k in args.k)
    print(f"CoAtt tag prediction on {args.dataset}/{args.split} ({result['images_scored']} studies with tags, "
          f"{result['images_without_tags']} without): {scores}")  # fmt: skip
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0
