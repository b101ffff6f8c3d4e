"""`hf-rrg coatt tags`: CoAtt's MLC tag vocabulary from a dataset's training split."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `coatt` command group to the `hf-rrg` parser."""
    group = subparsers.add_parser("coatt", help="CoAtt: the tag vocabulary of its multi-label classifier")
    commands = group.add_subparsers(dest="coatt_command", metavar="COMMAND")
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
    group.set_defaults(func=lambda args: group.print_help() or 2)


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
