"""`hf-rrg asgk visualize | tags | glove`: ASGK's Fig. 3 figure, tag files and GloVe vectors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..command_groups import command_group


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `asgk` command group to the `hf-rrg` parser."""
    commands = command_group(subparsers, "asgk", "ASGK: visualise what the model looked at, tag files, GloVe vectors")

    show = commands.add_parser(
        "visualize",
        help="heat map, auxiliary region, top tag nodes/edges and the report of one image, as a PNG (Fig. 3)",
    )
    show.add_argument("image", help="chest image (PNG, JPEG or DICOM)")
    show.add_argument("--model", required=True, help="ASGK model folder (a run's model/ or an exported repo)")
    show.add_argument("--out", type=Path, required=True, help="PNG file to write")
    show.add_argument("--node-threshold", type=float, default=0.5, help="show tags above this value (Fig. 3: 0.5)")
    show.add_argument("--edge-threshold", type=float, default=0.3, help="show edges above this weight (Fig. 3: 0.3)")
    show.add_argument("--num-beams", type=int, default=None, help="beam size (default: the model's)")
    show.add_argument("--trust-remote-code", action="store_true", help="load an exported repo's own code")
    show.set_defaults(func=run_visualize)

    tags = commands.add_parser("tags", help="write an ASGK tag file (labeler or IU X-Ray MeSH tags) for a dataset")
    tags.add_argument("dataset", help="builder name (iu_xray, demo, cov_ctr, report_folder, ...)")
    tags.add_argument("--data-dir", default=None, help="folder holding the source data")
    tags.add_argument("--config", default=None, help="named builder config")
    tags.add_argument("--source", choices=("labeler", "mesh"), default="labeler", help="tag source")
    tags.add_argument("--mesh-data-dir", default=None, help="folder with NLMCXR_reports.tgz (default --data-dir)")
    tags.add_argument("--min-frequency", type=int, default=25, help="MeSH: keep terms of at least N train studies")
    tags.add_argument("--out", type=Path, required=True, help="tag file to write (.json)")
    tags.set_defaults(func=run_tags)

    glove = commands.add_parser("glove", help="train GloVe vectors on report/text files for a tokenizer folder")
    glove.add_argument("--tokenizer", required=True, help="folder of an RRGTokenizer (e.g. RUN_DIR/tokenizer)")
    glove.add_argument("--text", nargs="+", required=True, help=".txt files or folders (reports + textbook)")
    glove.add_argument("--dim", type=int, default=300, help="vector size (the model's d_model; paper 300)")
    glove.add_argument("--epochs", type=int, default=50, help="passes over the co-occurrences (default 50)")
    glove.add_argument("--window", type=int, default=10, help="co-occurrence distance in words (default 10)")
    glove.add_argument("--out", type=Path, required=True, help="GloVe text file to write")
    glove.set_defaults(func=run_glove)


def run_visualize(args: argparse.Namespace) -> int:
    from ..hub.loading import load_model_and_processor
    from .visualize import visualize

    model, processor = load_model_and_processor(args.model, trust_remote_code=args.trust_remote_code)
    kwargs = {"num_beams": args.num_beams} if args.num_beams else {}
    result = visualize(model, processor, args.image, args.out, args.node_threshold, args.edge_threshold, kwargs)
    print(json.dumps({"report": result["report"], "box_y0_y1_x0_x1": result["box"],
                      "nodes": result["nodes"]}, ensure_ascii=False))  # fmt: skip
    print(f"Figure written to {result['out']}")
    return 0


def run_tags(args: argparse.Namespace) -> int:
    from ..data import load_builder
    from .tags import labeler_tags, mesh_tags

    kwargs = {"name": args.config} if args.config else {}
    built = load_builder(args.dataset, args.data_dir, **kwargs)
    if args.source == "labeler":
        tag_file = labeler_tags(dict(built.items()), progress=True)
    else:
        data_dir = args.mesh_data_dir or args.data_dir
        if not data_dir:
            raise ValueError("--source mesh needs --mesh-data-dir (or --data-dir) with NLMCXR_reports.tgz")
        tag_file = mesh_tags(dict(built.items()), data_dir, args.min_frequency)
    tag_file.write(args.out)
    print(f"{len(tag_file.tag_names)} tags for {len(tag_file.labels)} studies written to {args.out}")
    return 0


def run_glove(args: argparse.Namespace) -> int:
    from ..modeling.tokenization_rrg import RRGTokenizer
    from .glove import train_glove, write_glove_text
    from .textbook import read_textbook

    tokenizer = RRGTokenizer.from_pretrained(args.tokenizer)
    sentences = read_textbook(args.text)
    ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
    specials = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id]
    vectors, history = train_glove(ids, len(tokenizer), dim=args.dim, window=args.window, epochs=args.epochs,
                                   ignore=specials)  # fmt: skip
    write_glove_text(args.out, vectors, tokenizer.get_vocab())
    print(f"GloVe vectors {tuple(vectors.shape)} (loss {history[0]:.1f} -> {history[-1]:.1f}) written to {args.out}")
    return 0
