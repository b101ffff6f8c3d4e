"""hf-rrg side by side with the official code of R2Gen, R2GenCMN or XProNet: the same random weights in both, the
same studies, identical reports required, and both timings with their ratio, measured alternately in one process.

Run by hand (never a timed test), with a checkout of the official repository (nothing of it is part of hf-rrg):

    git clone https://github.com/zhjohnchan/R2GenCMN /tmp/R2GenCMN
    python benchmarks/bench_vs_official.py --official-dir /tmp/R2GenCMN --method r2gencmn
    python benchmarks/bench_vs_official.py --official-dir /tmp/R2Gen --method r2gen --batch-size 4
    python benchmarks/bench_vs_official.py --official-dir /tmp/XProNet --method xpronet

What it does:
1. builds the official model the way its own scripts do (its argument parser on the arguments of its IU X-Ray
   training script, e.g. `run_iu_xray.sh`; the
   official tokenizer over `--annotation`, R2Gen's annotation.json), with ImageNet weights off, and fixes its random
   weights with `--seed` (XProNet's prototype matrix, which the official code leaves uninitialised outside
   training, is drawn from N(0, 1/D));
2. writes that state dict to a temporary file and converts it with `hf_rrg.convert.convert` (`hf-rrg convert`): the
   hf-rrg model then holds the same weights, vocabulary and decoding settings (beam 3, summed log-probabilities);
3. encodes `--batch-size` real two-view studies (chest X-rays from ../shared/data, the eval transform) once and gives
   the same tensors to both models; XProNet gets the same pseudo labels in both (the official protocol);
4. checks that the reports are identical (the official tokenizer's decoding against hf-rrg's) and that the token
   cross-entropy of the official trainer equals hf-rrg's on real reports (eval mode, no dropout);
5. times generation and one training step (Adam; the official trainer's loss, gradient clipping for R2Gen) of
   both, alternately, best of `--repeats`, and prints them with their ratio and the machine.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import shlex
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_common import machine

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class OfficialLayout:
    """Where an official repository keeps its argument parser (`parse_agrs`) and its model class."""

    parser_file: str
    model_module: str
    model_class: str
    iu_script: str  # the shell script that trains on IU X-Ray: its arguments are the published settings


OFFICIAL = {
    "r2gen": OfficialLayout("main_train.py", "models.r2gen", "R2GenModel", "train_iu_xray.sh"),
    "r2gencmn": OfficialLayout("main_train.py", "models.models", "BaseCMNModel", "train_iu_xray.sh"),
    "xpronet": OfficialLayout("modules/utils.py", "models.models", "XProNet", "run_iu_xray.sh"),
}
#: Imported by the official model code for its attention plots only; stubbed when not installed.
PLOT_ONLY_MODULES = ("cv2",)


def script_arguments(path: Path) -> list[str]:
    """The command-line arguments of the official shell script that trains on IU X-Ray (`python main.py --x 1 ...`):
    XProNet's parser defaults are not its IU X-Ray settings (e.g. 20 classes of 10 prototypes instead of 14 x 20)."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: is this the official repository at the expected version?")
    words = shlex.split(path.read_text(encoding="utf-8").replace("\\\n", " "), comments=True)  # joined lines
    start = next((i for i, word in enumerate(words) if word.endswith(".py")), None)
    if start is None:
        raise SystemExit(f"{path} runs no Python script: is this the official repository at the expected version?")
    return words[start + 1 :]


def official_arguments(path: Path, argv: list[str]) -> argparse.Namespace:
    """The file's `parse_agrs()` alone, run on `argv` (the rest of the file, e.g. a training script's trainer and
    data imports, is not executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    function = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "parse_agrs"),
                    None)  # fmt: skip
    if function is None:
        raise SystemExit(f"{path} has no parse_agrs(): is this the official repository at the expected version?")
    namespace: dict = {"argparse": argparse}
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(path), "exec"), namespace)
    saved = sys.argv
    try:
        sys.argv = [path.name, *argv]
        return namespace["parse_agrs"]()
    finally:
        sys.argv = saved


def import_official(official_dir: Path, method: str) -> tuple[argparse.Namespace, type, Callable, type]:
    """(args, model class, compute_loss, Tokenizer) from the official checkout, with its IU X-Ray script's settings."""
    layout = OFFICIAL[method]
    if not (official_dir / layout.model_module.replace(".", "/")).with_suffix(".py").is_file():
        raise SystemExit(
            f"{official_dir} is not a checkout of the official {method} code: it has no "
            f"{layout.model_module.replace('.', '/')}.py (clone the repository named in this script's docstring)."
        )
    args = official_arguments(official_dir / layout.parser_file, script_arguments(official_dir / layout.iu_script))
    for name in PLOT_ONLY_MODULES:
        if importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)
            print(f"note: {name} is not installed; stubbed (the official code imports it for plotting only)")
    if not torch.cuda.is_available():  # the official beam search moves tensors with .cuda(): keep them here
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        print("note: no CUDA device; Tensor.cuda() is a no-op, so the official beam search runs on the CPU")
    sys.path.insert(0, str(official_dir))
    model_class = getattr(importlib.import_module(layout.model_module), layout.model_class)
    compute_loss = importlib.import_module("modules.loss").compute_loss
    tokenizer_class = importlib.import_module("modules.tokenizers").Tokenizer
    return args, model_class, compute_loss, tokenizer_class


def official_model(method: str, args: argparse.Namespace, model_class: type, tokenizer, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = model_class(args, tokenizer, mode="test") if method == "xpronet" else model_class(args, tokenizer)
    if method == "xpronet":  # uninitialised outside training (torch.FloatTensor): draw it
        prototypes = model.encoder_decoder.protypes
        torch.nn.init.normal_(prototypes, 0.0, 1.0 / prototypes.size(-1))
    return model


def real_studies(processor, batch: int, data: Path) -> dict[str, torch.Tensor]:
    """`batch` two-view studies of real chest X-rays (consecutive images of ../shared/data), eval transform."""
    images = sorted((data / "covid_cxr_notes" / "images").iterdir())
    if len(images) < 2 * batch:
        raise SystemExit(f"need {2 * batch} images in {data / 'covid_cxr_notes' / 'images'}, found {len(images)}")
    studies = [[str(images[2 * i]), str(images[2 * i + 1])] for i in range(batch)]
    return dict(processor.image_processor(studies, augment=False, return_tensors="pt"))


def alternate(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall times of `first` and `second`, run alternately (a busy machine slows both alike)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for index, function in enumerate((first, second)):
            start = time.perf_counter()
            function()
            best[index] = min(best[index], time.perf_counter() - start)
    return best[0], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-dir", type=Path, required=True, help="a checkout of the official repository")
    parser.add_argument("--method", choices=sorted(OFFICIAL), required=True)
    parser.add_argument("--annotation", type=Path, default=SHARED / "iu_xray" / "annotation.json",
                        help="R2Gen's IU X-Ray annotation.json (the official vocabulary is built from its train split)")
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (real chest X-rays)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-training", action="store_true")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    from hf_rrg.convert import convert
    from hf_rrg.data.collators import shifted_targets

    args, model_class, compute_loss, tokenizer_class = import_official(options.official_dir.resolve(), options.method)
    args.ann_path, args.dataset_name, args.visual_extractor_pretrained = str(options.annotation), "iu_xray", False
    theirs_tokenizer = tokenizer_class(args)
    theirs = official_model(options.method, args, model_class, theirs_tokenizer, options.seed)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "official_random.pth"
        torch.save({"state_dict": theirs.state_dict()}, checkpoint)
        converted = convert(options.method, checkpoint, options.annotation)
    ours, processor = converted.model, converted.processor

    inputs = real_studies(processor, options.batch_size, options.data)
    images = inputs["pixel_values"]
    extra_ours, extra_theirs = {}, {}
    if options.method == "xpronet":
        generator = torch.Generator().manual_seed(options.seed)
        labels = (torch.rand(options.batch_size, ours.config.num_observations, generator=generator) < 0.3).float()
        labels[torch.arange(options.batch_size), torch.randint(0, labels.size(1), (options.batch_size,))] = 1.0
        extra_ours, extra_theirs = {"observation_labels": labels}, {"labels": labels}

    theirs.eval(), ours.eval()
    with torch.no_grad():
        out = theirs(images, mode="sample", **extra_theirs)
        theirs_ids = out[0] if isinstance(out, tuple) else out
        theirs_reports = theirs_tokenizer.decode_batch(theirs_ids.cpu().numpy())
        ours_ids = ours.generate(**inputs, **extra_ours)
        ours_reports = processor.tokenizer.batch_decode(ours_ids, skip_special_tokens=True)
    same = sum(a == b for a, b in zip(theirs_reports, ours_reports))
    print(f"identical reports: {same} of {len(ours_reports)}")
    for a, b in zip(theirs_reports, ours_reports):
        if a != b:
            print(f"  first difference:\n    official: {a}\n    hf-rrg:   {b}")
            break

    with open(options.annotation, encoding="utf-8") as handle:
        reports = [entry["report"] for entry in json.load(handle)["train"][: options.batch_size]]
    ids = [theirs_tokenizer(report)[: args.max_seq_length] for report in reports]
    width = max(map(len, ids))
    reports_ids = torch.tensor([row + [0] * (width - len(row)) for row in ids])
    reports_masks = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    targets = shifted_targets(processor.tokenizer, reports, ours.config.max_seq_length)

    def theirs_loss() -> torch.Tensor:
        out = theirs(images, reports_ids, mode="train", **extra_theirs)
        logits = out[0] if isinstance(out, tuple) else out
        loss = compute_loss(logits, reports_ids, reports_masks)
        if options.method == "xpronet":  # the official trainer's total (Eq. 20)
            loss = loss + args.weight_img_con_loss * out[1].mean() + args.weight_txt_con_loss * out[2].mean()
        return loss

    def ours_loss() -> torch.Tensor:
        return ours(**inputs, **targets, **extra_ours).loss

    with torch.no_grad():
        ours_ce = ours(**inputs, **targets, **extra_ours)
        ours_ce = getattr(ours_ce, "ce_loss", None) or ours_ce.loss
        theirs_out = theirs(images, reports_ids, mode="train", **extra_theirs)
        theirs_ce = compute_loss(theirs_out[0] if isinstance(theirs_out, tuple) else theirs_out, reports_ids,
                                 reports_masks)  # fmt: skip
    print(f"token cross-entropy on {len(reports)} real reports (eval mode): official {float(theirs_ce):.6f}, "
          f"hf-rrg {float(ours_ce):.6f}")  # fmt: skip

    rows = []
    with torch.no_grad():
        official_s, ours_s = alternate(lambda: theirs(images, mode="sample", **extra_theirs),
                                       lambda: ours.generate(**inputs, **extra_ours), options.repeats)  # fmt: skip
    rows.append(("generation (beam 3)", official_s, ours_s))
    if not options.skip_training:
        theirs.train(), ours.train()
        theirs_optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-5)
        ours_optimizer = torch.optim.Adam(ours.parameters(), lr=1e-5)

        def theirs_step() -> None:
            theirs_optimizer.zero_grad(set_to_none=True)
            theirs_loss().backward()
            if options.method == "r2gen":
                torch.nn.utils.clip_grad_value_(theirs.parameters(), 0.1)  # R2Gen's trainer
            theirs_optimizer.step()

        def ours_step() -> None:
            ours_optimizer.zero_grad(set_to_none=True)
            ours_loss().backward()
            if options.method == "r2gen":
                torch.nn.utils.clip_grad_value_(ours.parameters(), 0.1)
            ours_optimizer.step()

        official_s, ours_s = alternate(theirs_step, ours_step, options.repeats)
        rows.append(("one training step", official_s, ours_s))
    print(f"\nMachine: {machine(torch.device('cpu'))}; {options.method}, batch {options.batch_size} two-view "
          f"studies of 224 px, {args.max_seq_length} tokens at most, best of {options.repeats} alternating runs\n")
    print("| step | official s | hf-rrg s | official / hf-rrg |")
    print("|---|---|---|---|")
    for name, official_s, ours_s in rows:
        print(f"| {name} | {official_s:.2f} | {ours_s:.2f} | {official_s / ours_s:.1f}x |")
    if same != len(ours_reports):
        raise SystemExit(f"the reports differ for {len(ours_reports) - same} of {len(ours_reports)} studies")


if __name__ == "__main__":
    main()
