"""Every method at its paper's size: generation reports/s, training samples/s and peak memory, next to the
visual-extractor floor of the same batch.

Run by hand (never a timed test):

    python benchmarks/bench_methods.py                          # all methods, batch 16, CPU (or CUDA when present)
    python benchmarks/bench_methods.py --methods coatt dcrrg --batch-size 4 --repeats 1
    python benchmarks/bench_methods.py --device cuda            # CUDA: bf16 autocast (--dtype float32 to turn off)

Sizes are the shipped IU X-Ray configs (`training_scripts/configs/<config>.yaml`: backbone, layers, widths,
`max_seq_length`, beam size, 2 views of 224 px); weights are random (`visual_pretrained` off), the vocabulary has
760 words (R2Gen's IU X-Ray vocabulary; CoAtt: its 1,000). Generation is forced to the full length
(`min_new_tokens`; CoAtt: `max_sentences` sentences, p(STOP) never above the threshold), so every method decodes the
same, worst-case number of steps; the table says how many tokens a report got.

Training is one optimizer step (Adam) of the method's report-generation objective with all its inputs: R2Gen,
R2GenCMN: token CE; CoAtt: Eq. 8-9 with tag labels; ASGK: step 3 (CE + graph + visual tag losses, both DenseNets);
XProNet: CE + contrastive + label terms; ITHN: the backbone's objective on anchors and neighbours in one pass
(2 x batch studies) + L_CP + L_CS; DCRRG: step 4 with every parameter trained (FFT; PT freezes the encoder).

The floor is the method's own CNN work on the same images, timed in the same process alternately with the
method: the visual extractor's forward (generation) and forward + backward (training) over the batch's views
(ASGK: both DenseNets, the local one on 224 px crops; ITHN training: anchors and neighbours). `x floor` is the
method's time over that. Each method runs in a fresh process, so `peak MiB` (CPU: the process's peak resident
memory; CUDA: peak allocated) is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from bench_common import machine, print_table, synchronize

#: row name -> shipped config (paper settings on IU X-Ray)
METHODS = {
    "r2gen": "r2gen_iu_xray",
    "r2gencmn": "r2gencmn_iu_xray",
    "coatt": "coatt_iu_xray",
    "asgk": "asgk_iu_xray",
    "xpronet": "xpronet_iu_xray",
    "ithn (r2gencmn)": "ithn_r2gencmn_iu_xray",
    "ithn (xpronet)": "ithn_xpronet_iu_xray",
    "dcrrg": "dcrrg_iu_xray",
}
SPECIALS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "unk_token_id": 3}
SENTENCE_END = 4  # the `.` token of the benchmark vocabulary


def timed(function: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def alternate(first: Callable[[], object], second: Callable[[], object], device: torch.device, repeats: int):
    """Best times of `first` and `second`, run alternately after one warm-up each (a busy machine slows both)."""
    first(), second()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        best[0] = min(best[0], timed(first, device))
        best[1] = min(best[1], timed(second, device))
    return best


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB


@dataclass
class Bench:
    """A method's model, its batch and what to time."""

    model: torch.nn.Module
    generate: Callable[[], torch.Tensor]
    loss: Callable[[], torch.Tensor]
    floor_forward: Callable[[], object]
    floor_training: Callable[[], object]


def build_model(config_name: str, vocab_size: int, device: torch.device):
    import hf_rrg  # noqa: F401  (registers the model types)
    from transformers import AutoConfig, AutoModelForImageTextToText

    from hf_rrg.training.config import load_config

    config = load_config(config_name)
    kwargs = {**config.model, "vocab_size": vocab_size, "max_views": 2, **SPECIALS}
    if "backbone_config" in kwargs:  # ITHN: the backbone's size, random weights (the backbone holds the CNN)
        kwargs["backbone_config"] = {**kwargs["backbone_config"], "visual_pretrained": False}
    else:
        kwargs["visual_pretrained"] = False
    if config.method == "coatt":
        kwargs["sentence_end_token_id"] = SENTENCE_END
    model_config = AutoConfig.for_model(config.method, **kwargs)
    model = AutoModelForImageTextToText.from_config(model_config).to(device)
    for key, value in config.generation.as_kwargs().items():
        setattr(model.generation_config, key, value)
    return config, model


def report_labels(batch: int, length: int, vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """Random training targets `w .. w . w .. . <eos>` (a `.` every 7th token), as the collator shifts them."""
    labels = torch.randint(SENTENCE_END + 1, vocab_size, (batch, length), generator=generator)
    labels[:, 6::7] = SENTENCE_END
    labels[:, -1] = SPECIALS["eos_token_id"]
    return labels


def visual_backbones(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The CNN(s) whose work is the floor: the backbone of every visual extractor (ASGK: global and local)."""
    found = []
    for name, module in model.named_modules():
        if name.endswith(("visual_extractor.backbone", "global_backbone", "local_backbone")):
            found.append(module)
    if not found:
        raise ValueError(f"no visual backbone found in {type(model).__name__}")
    return found


def make_bench(name: str, args: argparse.Namespace, device: torch.device) -> tuple[Bench, dict]:
    generator = torch.Generator().manual_seed(0)
    vocab = 1000 if name == "coatt" else args.vocab_size
    config, model = build_model(METHODS[name], vocab, device)
    batch, views, size = args.batch_size, 2, args.image_size
    length = model.config.max_seq_length if hasattr(model.config, "max_seq_length") else 60
    if name.startswith("ithn"):
        length = model.config.backbone_config.max_seq_length
    pixels = torch.randn(batch, views, 3, size, size, generator=generator).to(device)
    labels = report_labels(batch, length - 1, vocab, generator).to(device)
    inputs: dict[str, torch.Tensor] = {"pixel_values": pixels, "labels": labels}
    if name in ("coatt", "asgk"):
        tags = model.config.num_tags
        inputs["tag_labels"] = (torch.rand(batch, tags, generator=generator) < 0.05).float().to(device)
    observations = 14
    if "xpronet" in name:
        inputs["observation_labels"] = (torch.rand(batch, observations, generator=generator) < 0.3).float().to(device)
    if name.startswith("ithn"):
        inputs["negative_pixel_values"] = torch.randn(batch, views, 3, size, size, generator=generator).to(device)
        inputs["negative_labels"] = report_labels(batch, length - 1, vocab, generator).to(device)
        if "observation_labels" in inputs:
            inputs["negative_observation_labels"] = inputs["observation_labels"].flip(0)
        model.set_epoch(5)
    if name == "dcrrg":
        inputs["input_ids"] = torch.cat([torch.full((batch, 1), SPECIALS["bos_token_id"]), labels[:, :-1].cpu()], 1)
        inputs["input_ids"] = inputs["input_ids"].to(device)

    settings = dict(model.generation_config.to_diff_dict())
    if name == "coatt":  # hierarchical decoding: every sentence, each to its full length when no `.` comes
        gen_kwargs = dict(stop_threshold=1 - 1e-6)
    else:
        gen_kwargs = dict(max_new_tokens=length, min_new_tokens=length - 1)  # the official cap: max_seq_length new

    def generate() -> torch.Tensor:
        return model.generate(pixel_values=pixels, **gen_kwargs)

    def loss() -> torch.Tensor:
        return model(**inputs).loss

    backbones = visual_backbones(model)
    images = pixels.flatten(0, 1)
    floor_images = torch.cat([images, inputs["negative_pixel_values"].flatten(0, 1)]) if name.startswith("ithn") else images

    def floor_pass(training: bool) -> None:
        for backbone in backbones:
            source = floor_images if training else images
            out = backbone.forward_features(source)
            if training:
                out.float().mean().backward()

    info = {"beams": settings.get("num_beams", model.generation_config.num_beams), "tokens": length}
    return Bench(model, generate, loss, lambda: floor_pass(False), lambda: floor_pass(True)), info


def autocast(device: torch.device, dtype: str):
    if device.type == "cuda" and dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure(name: str, args: argparse.Namespace) -> dict[str, object]:
    """One method's figures, in the calling (fresh) process."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    bench, info = make_bench(name, args, device)
    model = bench.model
    row: dict[str, object] = {"method": name, "config": METHODS[name]}
    model.eval()
    with torch.no_grad(), autocast(device, args.dtype):
        generated = bench.generate()
        tokens = (generated != model.config.pad_token_id).sum(dim=1).float().mean().item()
        generation, floor = alternate(bench.generate, bench.floor_forward, device, args.repeats)
    row.update({"beams": info["beams"], "tokens/report": round(tokens, 1),
                "reports/s": args.batch_size / generation, "floor reports/s": args.batch_size / floor,
                "gen x floor": generation / floor})  # fmt: skip
    if not args.skip_training:
        model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, args.dtype):
                loss = bench.loss()
            loss.backward()
            optimizer.step()

        def floor_step() -> None:
            model.zero_grad(set_to_none=True)
            with autocast(device, args.dtype):
                bench.floor_training()

        training, floor = alternate(step, floor_step, device, args.repeats)
        row.update({"samples/s": args.batch_size / training, "floor samples/s": args.batch_size / floor,
                    "train x floor": training / floor})  # fmt: skip
    row["peak MiB"] = peak_memory_mib(device)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--vocab-size", type=int, default=760)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="CUDA autocast dtype")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in args.methods:  # a fresh process per method: its peak memory is its own
        with context.Pool(1) as pool:
            rows.append(pool.apply(measure, (name, args)))
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    device = torch.device(args.device)
    precision = "bf16 autocast" if device.type == "cuda" and args.dtype == "bfloat16" else "float32"
    print(f"\nMachine: {machine(device)}; batch {args.batch_size}, 2 views of {args.image_size} px, {precision}\n")
    print_table(rows)


if __name__ == "__main__":
    main()
