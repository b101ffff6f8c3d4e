"""Generation throughput with the decoder cache vs recomputing the prefix, and training step time / peak memory,
for R2Gen and R2GenCMN at the papers' size (ResNet-101, 3+3 layers, d_model 512, two 224 px views).

Run by hand (never a timed test):

    python benchmarks/bench_generation.py                      # paper size, batch 16, beam 3, 60 tokens
    python benchmarks/bench_generation.py --batch-size 4 --device cuda

Random weights; `min_length` forces every report to the full length, so both modes decode the same number of
steps. Prints a Markdown table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import torch
from bench_common import machine, print_table

import hf_rrg  # noqa: F401
from hf_rrg import R2GenCMNConfig, R2GenCMNForConditionalGeneration, R2GenConfig, R2GenForConditionalGeneration

MODELS = {
    "R2Gen": (R2GenForConditionalGeneration, R2GenConfig),
    "R2GenCMN": (R2GenCMNForConditionalGeneration, R2GenCMNConfig),
}


def timed(function, device: torch.device, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak)


def measure(name: str, args: argparse.Namespace) -> dict[str, object]:
    """One model's figures, measured in the calling process (the process peak is this model's alone)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    pixel_values = torch.randn(args.batch_size, 2, 3, args.image_size, args.image_size, device=device)
    model_class, config_class = MODELS[name]
    config = config_class(vocab_size=args.vocab_size, visual_pretrained=False, max_seq_length=args.tokens)
    model = model_class(config).to(device).eval()
    settings = dict(num_beams=args.beams, max_length=args.tokens, min_length=args.tokens)
    with torch.no_grad():
        cached = timed(lambda: model.generate(pixel_values=pixel_values, use_cache=True, **settings), device,
                       args.repeats)  # fmt: skip
        recomputed = timed(lambda: model.generate(pixel_values=pixel_values, use_cache=False, **settings), device,
                           args.repeats)  # fmt: skip
    row: dict[str, object] = {
        "model": name,
        "cached reports/s": args.batch_size / cached,
        "recomputed reports/s": args.batch_size / recomputed,
        "speed-up": recomputed / cached,
    }
    if not args.skip_training:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        labels = torch.randint(4, args.vocab_size, (args.batch_size, args.tokens - 1), device=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            model(pixel_values=pixel_values, labels=labels).loss.backward()
            optimizer.step()

        step()  # warm-up
        row["train step s"] = timed(step, device, args.repeats)
        row["peak memory MiB"] = peak_memory_mib(device)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--vocab-size", type=int, default=760)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in args.models:  # a fresh process per model: its peak memory is its own
        with context.Pool(1) as pool:
            rows.append(pool.apply(measure, (name, args)))
    print(f"\nMachine: {machine(torch.device(args.device))}; batch {args.batch_size}, beam {args.beams}, "
          f"{args.tokens} tokens, 2 views of {args.image_size} px, vocabulary {args.vocab_size}\n")  # fmt: skip
    print_table(rows)


if __name__ == "__main__":
    main()
