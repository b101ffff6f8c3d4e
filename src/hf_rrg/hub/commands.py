"""`hf-rrg export | push | generate`: export a run as a Hub repo, upload it, write reports for image files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a clear usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def add_export_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that writes a Hub model folder (`export`, `convert`): card names, licence,
    replacing a previous export."""
    parser.add_argument("--repo-id", metavar="ORG/NAME", help="Hub repo id used in the card's usage examples")
    parser.add_argument("--model-name", help="name shown in the model card (default: the folder name)")
    parser.add_argument("--license", default="other", help="Hub licence id for the card metadata (default: other)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace DIR when it is a previous hf-rrg export (hf_rrg_export.json)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a training run (or model folder) as a self-contained Hub model repository",
        description="Write a folder that is a Hub model repo: weights, configs with auto_map, tokenizer/processor, "
        "modeling and pipeline code, metrics, training config and a model card (README.md).",
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="training run folder (with model/) or a model folder")
    export.add_argument(
        "--out", required=True, metavar="DIR", help="folder to write (new or empty; never the run folder itself)"
    )
    add_export_options(export)
    export.set_defaults(func=_export)

    push = subparsers.add_parser(
        "push",
        help="export a training run (or a PEFT adapter folder) and upload it to the Hugging Face Hub",
        description="Export RUN_DIR to a temporary folder and upload it as one commit to the model repo ORG/NAME "
        "(created when missing). A PEFT adapter folder (adapter_config.json, e.g. RUN_DIR/prompt/adapter of DCRRG) "
        "is uploaded alone with its own card; --base-model names its base model on the Hub. Authenticate with "
        "`hf auth login` or --token / HF_TOKEN.",
    )
    push.add_argument("run_dir", metavar="RUN_DIR",
                      help="training run folder (with model/), a model folder, or a PEFT adapter folder")  # fmt: skip
    push.add_argument("--base-model", metavar="ORG/NAME",
                      help="adapter only: the Hub id of its base model (needed when adapter_config.json names a "
                      "local folder)")  # fmt: skip
    push.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="target model repository")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--token", help="Hub token (default: the logged-in token or HF_TOKEN)")
    push.add_argument("--commit-message", help="commit message of the upload")
    push.add_argument("--license", default="other", help="Hub licence id for the card metadata (default: other)")
    push.set_defaults(func=_push)

    generate = subparsers.add_parser(
        "generate",
        help="write the report of chest X-ray image(s) with a saved or exported model",
        description="Generate reports for PNG/JPEG/DICOM images: one study per image by default, or consecutive "
        "groups of --views-per-study images as the views of one study. Reports go to stdout as they come, a "
        "progress bar to stderr (not with --quiet). A study whose image cannot be read is reported on stderr by "
        "file name; the other reports are still written, and the exit status is 1. Options may come before, "
        "between or after the images.",
    )
    generate.add_argument(
        "--model", required=True, metavar="DIR",
        help="model folder (an exported repo, or RUN_DIR/model) or the training run folder RUN_DIR itself",
    )
    generate.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG or DICOM)")
    generate.add_argument(
        "--views-per-study", type=positive_int, default=1, metavar="N",
        help="group every N consecutive images into a study",
    )
    generate.add_argument(
        "--num-beams", type=positive_int, help="beam size (default: the model's generation_config.json)"
    )
    generate.add_argument("--max-new-tokens", type=positive_int, help="longest report in tokens (default: the model's)")
    generate.add_argument("--batch-size", type=positive_int, default=1, help="studies generated together (default 1)")
    generate.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the GPU when there is one)")
    generate.add_argument("--json", action="store_true", help="print one JSON object per study")
    generate.add_argument(
        "--quiet", action="store_true", help="no progress bars (model loading, studies); reports, errors only"
    )
    generate.add_argument(
        "--heatmap", metavar="OUT_DIR",
        help="also write what explains each report as PNG overlays in OUT_DIR (R2Gen family: cross-attention per "
        "sentence and view; CoAtt: visual attention; ASGK: heat map and region); one study at a time",
    )
    generate.add_argument(
        "--trust-remote-code", action="store_true", help="allow the folder's own code for methods hf-rrg lacks"
    )
    generate.set_defaults(func=_generate, intermixed_positional="images")

    space = subparsers.add_parser(
        "space",
        help="write a Gradio Space (demo page) for a model: report, settings and what explains the report",
        description="Write a folder that is a Hugging Face Space: app.py, report_explanation.py, requirements.txt, "
        "README.md (sdk: gradio, models:), space_config.json and CC BY example X-rays. A local MODEL folder is "
        "copied into the Space unless --model-id names its Hub repo. Push it with `hf upload ORG/SPACE DIR "
        "--repo-type space`.",
    )
    space.add_argument("model", metavar="MODEL", help="exported model folder, or a Hub id ORG/NAME")
    space.add_argument("--out", required=True, metavar="DIR", help="Space folder to write (new or empty)")
    space.add_argument("--model-id", metavar="ORG/NAME", help="Hub id the Space loads (default: MODEL when a Hub id)")
    space.add_argument("--title", help="title of the page (default: the model's name)")
    space.add_argument(
        "--modalities", nargs="+", metavar="CODE", help="DICOM Modality codes the page accepts (default: CR DX RG)"
    )
    space.add_argument("--overwrite", action="store_true", help="replace DIR when it is a previous `hf-rrg space`")
    space.set_defaults(func=_space)

    demo = subparsers.add_parser(
        "demo",
        help="run the demo page of a model locally (the Space's app; needs `pip install \"hf-rrg[demo]\"`)",
        description="Serve the same Gradio page `hf-rrg space` writes, for MODEL (an exported folder or a Hub id).",
    )
    demo.add_argument("model", metavar="MODEL", help="exported model folder, or a Hub id ORG/NAME")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")
    demo.add_argument(
        "--modalities", nargs="+", metavar="CODE", help="DICOM Modality codes the page accepts (default: CR DX RG)"
    )
    demo.set_defaults(func=_demo)


def _export(args: argparse.Namespace) -> int:
    from .export import export_model

    try:
        out = export_model(
            args.run_dir,
            args.out,
            repo_id=args.repo_id,
            model_name=args.model_name,
            license=args.license,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from error
    files = sorted(path.name for path in out.iterdir())
    print(f"Exported {args.run_dir} -> {out} ({len(files)} files: {', '.join(files)})")
    print(f"Load it with AutoModelForImageTextToText.from_pretrained({str(out)!r}, trust_remote_code=True)")
    return 0


def _space(args: argparse.Namespace) -> int:
    from .space import write_space

    try:
        out = write_space(args.model, args.out, model_id=args.model_id, title=args.title,
                          dicom_modalities=args.modalities, overwrite=args.overwrite)  # fmt: skip
    except FileExistsError as error:
        raise ValueError(str(error)) from error
    print(f"Wrote the Space for {args.model} to {out} ({', '.join(sorted(p.name for p in out.iterdir()))})")
    print(f"Try it: cd {out} && python app.py   |   push it: hf upload ORG/SPACE {out} --repo-type space")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import space_app
    from .examples import example_images
    from .loading import load_model_and_processor
    from .space import card_title

    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise ImportError(f"hf-rrg demo needs gradio ({error}); install it with: pip install \"hf-rrg[demo]\"") from None
    local = Path(args.model).is_dir()
    settings = space_app.AppSettings(
        model=args.model,
        title=card_title(Path(args.model)) if local else args.model.split("/")[-1],
        dicom_modalities=list(args.modalities or space_app.XRAY_MODALITIES),
        examples=[str(example.path) for example in example_images()],
    )
    if local:  # checked (missing files, checksums) and loaded with hf-rrg's classes
        model, processor = load_model_and_processor(args.model)
    else:
        model, processor = space_app.load_model(args.model)
    print(f"Serving the demo page of {args.model} on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    space_app.launch(space_app.build_demo(settings, model, processor), host=args.host, port=args.port)
    return 0


def _push(args: argparse.Namespace) -> int:
    from .push import push_to_hub

    result = push_to_hub(
        args.run_dir,
        args.repo_id,
        private=args.private,
        token=args.token,
        commit_message=args.commit_message,
        license=args.license,
        base_model=args.base_model,
    )
    print(f"Uploaded {len(result.files)} files to {result.repo_url}")
    if result.commit_url:
        print(f"Commit: {result.commit_url}")
    return 0


def group_studies(images: list[str], views_per_study: int) -> list[list[str]]:
    """Consecutive groups of `views_per_study` images; checks the files exist first (errors name the file)."""
    if views_per_study < 1:
        raise ValueError(f"--views-per-study must be >= 1, got {views_per_study}.")
    if len(images) % views_per_study:
        raise ValueError(
            f"Got {len(images)} images, not a multiple of --views-per-study {views_per_study}; give every study "
            "the same number of views (or run the command once per study)."
        )
    for image in images:
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"Image file {image} does not exist.")
        if not path.is_file():
            raise ValueError(f"Image path {image} is not a file.")
    return [images[i : i + views_per_study] for i in range(0, len(images), views_per_study)]


def load_studies(studies: list[list[str]]) -> tuple[list[tuple[int, tuple]], list[str]]:
    """Decode every study's images with hf-rrg's loader: ([(study index, decoded views)], [error per bad study])."""
    from ..modeling.image_loading import ImageLoadError, load_image

    loaded, errors = [], []
    for index, study in enumerate(studies):
        try:
            loaded.append((index, tuple(load_image(path) for path in study)))
        except ImageLoadError as error:
            errors.append(" ".join(str(error).split()))
    return loaded, errors


def _generate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .pipeline_registration import check_device, report_pipeline

    studies = group_studies(args.images, args.views_per_study)
    check_device(args.device)
    pipe = report_pipeline(
        args.model, device=args.device, trust_remote_code=args.trust_remote_code, loading_bars=not args.quiet
    )
    generate_kwargs = {}
    if args.num_beams is not None:
        generate_kwargs["num_beams"] = args.num_beams
    if args.max_new_tokens is not None:
        generate_kwargs["max_new_tokens"] = args.max_new_tokens
    failed = 0
    chunk = 4 * args.batch_size  # decoded images of a few batches in memory at a time; reports printed as they come
    single = len(studies) == 1
    progress = tqdm(
        total=len(studies), desc="generate", unit="study", file=sys.stderr, disable=single or args.quiet
    )
    with progress:
        for start in range(0, len(studies), chunk):
            batch = studies[start : start + chunk]
            loaded, errors = load_studies(batch)
            for error in errors:
                _write_line(f"hf-rrg generate: error: {error}", sys.stderr)
            failed += len(errors)
            for (index, _), report in zip(loaded, _study_reports(pipe, loaded, batch, args, generate_kwargs)):
                _write_line(_report_line(batch[index], report, args.json, single), sys.stdout)
            progress.update(len(batch))
    if failed:
        print(
            f"hf-rrg generate: error: {failed} of {len(studies)} studies failed (named above); the other "
            f"{len(studies) - failed} reports were written",
            file=sys.stderr,
        )
        return 1
    return 0


def _study_reports(
    pipe, loaded: list[tuple[int, tuple]], batch: list[list[str]], args: argparse.Namespace, kwargs: dict
) -> list[str]:
    """The reports of the decoded studies of `batch` (with their heat maps under --heatmap)."""
    if not loaded:
        return []
    if args.heatmap:
        return [_write_heatmaps(pipe, views, batch[index], args.heatmap, kwargs) for index, views in loaded]
    outputs = pipe([views for _, views in loaded], batch_size=args.batch_size, generate_kwargs=kwargs)
    return [output[0]["generated_text"] for output in outputs]


def _write_line(line: str, stream) -> None:
    """Print `line` to `stream` now, above the progress bar (which tqdm redraws below it)."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=stream)
    stream.flush()


def _write_heatmaps(pipe, views: tuple, study: list[str], out_dir: str, generate_kwargs: dict) -> str:
    """Generate one study's report with its explanation; write the overlays as ``<first image stem>_NN.png``."""
    from ..modeling.report_explanation import explain_report, save_overlays

    explanation = explain_report(pipe.model, pipe.processor, views, generate_kwargs)
    paths = save_overlays(explanation, out_dir, Path(study[0]).stem)
    findings = "; ".join(f"{name} {value:.2f}" for name, value in explanation.findings)
    where = f"{len(paths)} overlays ({explanation.kind}) in {out_dir}" if paths else f"no overlay ({explanation.method})"
    line = f"hf-rrg generate: {', '.join(study)}: {where}" + (f"; {findings}" if findings else "")
    _write_line(line, sys.stderr)
    return explanation.report


def _report_line(study: list[str], report: str, as_json: bool, single: bool) -> str:
    if as_json:
        return json.dumps({"images": study, "report": report})
    return report if single else f"{', '.join(study)}: {report}"
