"""`hf-rrg data info | export | demo`: inspect, export and try the dataset builders from the command line."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """`["key=value", ...]` → config kwargs. Values are read as JSON when they parse (numbers, true/false, null,
    lists), as a tuple of numbers for comma-separated numbers (`0.8,0.1,0.1`), else kept as text."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}.")
        value: Any
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            parts = [p.strip() for p in text.split(",")]
            try:
                value = tuple(float(p) for p in parts) if len(parts) > 1 else text
            except ValueError:
                value = tuple(parts) if len(parts) > 1 else text
        if isinstance(value, list):
            value = tuple(value)
        options[key] = value
    return options


def add_split_arguments(parser: argparse.ArgumentParser, split: str, help_config: str = "named builder config") -> None:
    """`--data-dir`, `--config`, `--set KEY=VALUE` and `--split` (default `split`): what `load_split` reads."""
    parser.add_argument("--data-dir", default=None, help="folder holding the source data")
    parser.add_argument("--config", default=None, help=help_config)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="builder option (repeatable)")
    parser.add_argument("--split", default=split, help=f"split to read (default {split})")


def load_split(name: str, data_dir: str | None, config: str | None, pairs: list[str] | None, split: str) -> Any:
    """One split of a builder, from command-line options (`--config`, `--set key=value`); a missing split is an
    error listing the dataset's splits."""
    from .builders import load_builder

    options = parse_set_options(pairs)
    if config:
        options["name"] = config
    dataset = load_builder(name, data_dir, **options)
    if split not in dataset:
        raise ValueError(f"dataset {name!r} has no split {split!r}; its splits are {list(dataset)}")
    return dataset[split]


def as_set_options(message: str, options: set[str], prefix: str = "") -> str:
    """`message` with the builder options it names in Python form (``skip_missing_images=True``) written as the
    command line takes them (``--set skip_missing_images=true``; `prefix` e.g. ``data.builder_kwargs.`` for
    `hf-rrg train`)."""
    if not options:
        return message
    names = "|".join(re.escape(name) for name in sorted(options, key=len, reverse=True))
    literal = {"True": "true", "False": "false", "None": "null"}
    return re.sub(
        rf"`?\b({names})=(True|False|None|-?\d[\w.]*)`?",
        lambda match: f"`--set {prefix}{match[1]}={literal.get(match[2], match[2])}`",
        message,
    )


@contextmanager
def builder_errors_for_the_command_line(name: str, prefix: str = "") -> Iterator[None]:
    """Errors of builder `name` raised inside say how the command line sets the options they name
    (`as_set_options`); the Python message stays for Python users."""
    try:
        yield
    except (ValueError, OSError) as error:
        from .builders import builder_option_names

        message = str(error)
        translated = as_set_options(message, builder_option_names(name), prefix)
        if translated == message:
            raise
        raise ValueError(translated) from error


def _builder_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = parse_set_options(args.set)
    if getattr(args, "config", None):
        kwargs["name"] = args.config
    return kwargs


def _load(args: argparse.Namespace):
    from .builders import load_builder

    with builder_errors_for_the_command_line(args.name):
        return load_builder(args.name, args.data_dir, cache_dir=args.cache_dir, **_builder_kwargs(args))


def _info(args: argparse.Namespace) -> int:
    from .stats import dataset_statistics, format_statistics

    dataset = _load(args)
    stats = dataset_statistics(dataset, cleaner=args.cleaner, min_count=args.min_count)
    print(f"dataset {args.name!r}" + (f" (config {args.config!r})" if args.config else ""))
    print(format_statistics(stats))
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export_folder import check_output_folder
    from .builders import builder_script_path
    from .export import EXPORT_KIND, export_parquet

    sources = [Path(args.data_dir)] if args.data_dir else []
    check_output_folder(Path(args.out), EXPORT_KIND, sources, args.overwrite)  # before the (long) dataset build
    dataset = _load(args)
    card = builder_script_path(args.name).parent / "README.md"
    written = export_parquet(
        dataset, args.out, card_path=card if card.is_file() else None, overwrite=args.overwrite, sources=sources
    )
    for split, path in written.items():
        print(f"{split}: {len(dataset[split])} examples -> {path}")
    print(
        f"Wrote the Parquet dataset and its card to {args.out} (load it with datasets.load_dataset({str(args.out)!r}))."
    )
    return 0


def _cache(args: argparse.Namespace) -> int:
    from .builders import make_builder
    from .image_cache import ImageCacheSettings, cached_builder_dataset, image_cache_folder

    settings = ImageCacheSettings(args.size, args.eval_size)
    with builder_errors_for_the_command_line(args.name):
        builder = make_builder(args.name, args.data_dir, cache_dir=args.cache_dir, **_builder_kwargs(args))
        builder.download_and_prepare()
    dataset = cached_builder_dataset(builder, settings, num_proc=args.num_proc)
    for split, rows in dataset.items():
        print(f"{split}: {len(rows)} studies")
    print(
        f"Cached the images of {args.name!r} (shorter side {args.size} for training, {args.eval_size} px square for "
        f"evaluation) in {image_cache_folder(builder, settings)}. Train from it with "
        f"`data.builder_kwargs: {{image_cache_size: {args.size}, image_cache_eval_size: {args.eval_size}}}`."
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .builders import load_builder
    from .stats import dataset_statistics, format_statistics

    dataset = load_builder("demo", cache_dir=args.cache_dir)
    print(format_statistics(dataset_statistics(dataset, cleaner=args.cleaner, min_count=args.min_count)))
    split = "train" if "train" in dataset else next(iter(dataset))
    example = dataset[split][0]
    sizes = [f"{image.width}x{image.height} {image.mode}" for image in example["images"]]
    print(f"\nexample {example['id']!r} ({split}): {len(sizes)} image(s) {', '.join(sizes)}")
    print(f"report: {example['report']}")
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", default=None, help="where prepared datasets go (default: datasets' cache)"
    )


def _add_builder_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", help="builder name (see `datasets_scripts/`), e.g. iu_xray, mimic_cxr, report_folder"
    )
    parser.add_argument("--data-dir", default=None, help="folder holding the source data")
    parser.add_argument("--config", default=None, help="named builder config, e.g. nlm for iu_xray")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="builder config option (repeatable), e.g. min_images=2",
    )
    _add_common(parser)


def _add_stats_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-count", type=int, default=3, help="vocabulary threshold (default 3)")
    parser.add_argument(
        "--cleaner", default="r2gen_iu_xray", help="report cleaner preset (default r2gen_iu_xray)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hf-rrg data info | demo | export`."""
    data = subparsers.add_parser("data", help="dataset builders: statistics, Parquet export, demo data")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    info = commands.add_parser("info", help="split sizes, report-length statistics and vocabulary size")
    _add_builder_args(info)
    _add_stats_args(info)
    info.set_defaults(func=_info)

    export = commands.add_parser(
        "export", help="write Hub-ready Parquet (images embedded) and the dataset card"
    )
    _add_builder_args(export)
    export.add_argument(
        "--out", required=True, help="output folder (gets data/<split>-*.parquet and README.md); new or empty"
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace --out when it is a previous `hf-rrg data export`"
    )
    export.set_defaults(func=_export)

    cache = commands.add_parser(
        "cache", help="decode every image once and store it resized (Arrow shards), so epochs read small images"
    )
    _add_builder_args(cache)
    cache.add_argument("--size", type=int, default=256, help="shorter side for the train transform (default 256)")
    cache.add_argument("--eval-size", type=int, default=224, help="square size for the eval transform (default 224)")
    cache.add_argument("--num-proc", type=int, default=os.cpu_count(), help="decoding processes (default: all cores)")
    cache.set_defaults(func=_cache)

    demo = commands.add_parser(
        "demo", help="load the embedded demo dataset and show its statistics and an example"
    )
    _add_stats_args(demo)
    _add_common(demo)
    demo.set_defaults(func=_demo)
