"""ITHN's exact neighbour search at MIMIC-CXR scale: time and peak memory next to the matrix-product floor.

Run by hand (never a timed test; the full size takes tens of minutes on 2 CPU cores, seconds on a GPU):

    python benchmarks/bench_ithn_mining.py                       # 270,000 x 768, top-10, with and without patients
    python benchmarks/bench_ithn_mining.py --rows 20000          # a quick look
    python benchmarks/bench_ithn_mining.py --device cuda

Synthetic l2-normalised Gaussian rows stand in for the report embeddings (the search does the same work whatever
the values). The floor is the bare matrix product of all rows against all rows, n² × d × 2 FLOP, at the GFLOP/s
of a bare `block_size × d @ d × block_size` product measured in the same process just before and just after each
search (the slower of the two rates, so a busy machine does not flatter the ratio). Each search runs in a fresh
process, so its peak resident memory (`ru_maxrss`) is its own; "above inputs" subtracts the resident memory once
the embeddings exist. A sample of rows is checked against a brute-force search of the same rows.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time

import torch
from bench_common import machine, print_table, synchronize


def matmul_gflops(dim: int, block: int, device: torch.device, repeats: int = 5) -> float:
    """GFLOP/s of the bare tile product the search is made of (best of `repeats`)."""
    a = torch.nn.functional.normalize(torch.randn(block, dim, device=device), dim=1)
    b = torch.nn.functional.normalize(torch.randn(block, dim, device=device), dim=1)
    out = torch.empty(block, block, device=device)
    torch.mm(a, b.T, out=out)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b.T, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * block * block * dim / best / 1e9


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def brute_force_rows(matrix: torch.Tensor, rows: torch.Tensor, k: int, groups: torch.Tensor | None) -> torch.Tensor:
    """Top-k column ids of `rows` by a plain full product (self and own group excluded)."""
    normed = torch.nn.functional.normalize(matrix, dim=1)
    scores = normed[rows] @ normed.T
    scores[torch.arange(len(rows)), rows] = float("-inf")
    if groups is not None:
        scores.masked_fill_(groups[rows, None] == groups[None, :], float("-inf"))
    return scores.topk(k, dim=1).indices


def measure(args: argparse.Namespace, with_patients: bool) -> dict[str, object]:
    """One search in this (fresh) process."""
    from hf_rrg.ithn.exact_search import nearest_neighbours

    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(args.rows, args.dim, generator=generator)
    patients = None
    if with_patients:  # MIMIC-CXR: about 4 studies per patient
        patients = torch.randint(0, max(1, args.rows // args.studies_per_patient), (args.rows,), generator=generator)
    inputs_mib = resident_mib()
    before = matmul_gflops(args.dim, args.block_size, device)
    synchronize(device)
    start = time.perf_counter()
    scores, indices = nearest_neighbours(
        embeddings, args.k, patients.tolist() if patients is not None else None, args.block_size, device,
        progress=args.progress,
    )  # fmt: skip
    synchronize(device)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    after = matmul_gflops(args.dim, args.block_size, device)
    rate = min(before, after)
    floor = 2 * args.rows**2 * args.dim / rate / 1e9
    sample = torch.randperm(args.rows, generator=generator)[: args.check_rows]
    expected = brute_force_rows(embeddings, sample, indices.size(1), patients)
    agree = float((indices[sample] == expected).all(dim=1).float().mean())
    return {
        "search": "with patient exclusions" if with_patients else "self excluded",
        "rows x dim": f"{args.rows:,} x {args.dim}",
        "seconds": seconds,
        "matmul GFLOP/s (before / after)": f"{before:.1f} / {after:.1f}",
        "floor s": floor,
        "time / floor": seconds / floor,
        "peak MiB (above inputs)": f"{peak_mib:.0f} ({peak_mib - inputs_mib:.0f})" if device.type == "cpu"
        else f"{peak_mib:.0f} (GPU)",
        f"rows agreeing with brute force (of {args.check_rows})": f"{agree:.0%}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=270_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block-size", type=int, default=4096)
    parser.add_argument("--studies-per-patient", type=int, default=4)
    parser.add_argument("--check-rows", type=int, default=64)
    parser.add_argument("--only", choices=("self", "patients"), default=None, help="run one of the two searches")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--progress", action="store_true", help="show the search's progress bar")
    args = parser.parse_args()
    modes = {"self": [False], "patients": [True], None: [False, True]}[args.only]
    context = multiprocessing.get_context("spawn")
    rows = []
    for with_patients in modes:  # a fresh process per search: its peak memory is its own
        with context.Pool(1) as pool:
            rows.append(pool.apply(measure, (args, with_patients)))
    print(f"\nMachine: {machine(torch.device(args.device))}; top-{args.k}, tiles of {args.block_size} rows\n")
    print_table(rows)


if __name__ == "__main__":
    main()
