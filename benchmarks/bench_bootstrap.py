"""Benchmark: bootstrap intervals and paired tests at MIMIC-CXR test-set size (3,858 studies by default).

Reports are real IU X-Ray findings (R2Gen's annotation.json), made ~60 tokens long and paired with another
study's report exactly as `bench_nlg_metrics.py` does (a "prediction" is another study's report). Times, per
metric family: scoring the set once while keeping per-study statistics, the `--resamples` bootstrap resamples
(corpus scores recomputed per resample, CIDEr-D's document frequencies included), and a paired comparison of
two systems (`--resamples` randomization trials + `--resamples` paired bootstrap resamples). Wall time and CPU
time (process time) are both printed: on a shared machine wall time is inflated by other jobs' load. Run by hand:

    python benchmarks/bench_bootstrap.py [--studies 3858] [--resamples 1000] [--metrics bleu,rouge_l,cider_d,ce]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nlg_metrics import make_pairs  # noqa: E402  (a sibling script)


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=3858, help="MIMIC-CXR's test split has 3,858 studies")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--metrics", default="bleu,rouge_l,cider_d,ce")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # torch's "sparse CSR is beta" notice

    import torch

    from hf_rrg.metrics import bootstrap_intervals, compare_systems, evaluate_detailed

    predictions, references = make_pairs(args.data, args.studies)
    other_system = references[1:] + references[:1]
    mean_tokens = sum(len(text.split()) for text in references) / len(references)
    print(f"{args.studies} studies, {mean_tokens:.1f} tokens per report, {args.resamples} resamples; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'family':<10} {'score+stats':>12} {'bootstrap':>16} {'compare':>16}   (wall s / cpu s)")
    total = [0.0, 0.0]
    for family in args.metrics.split(","):
        scored, wall, cpu = timed(lambda: evaluate_detailed(predictions, references, metrics=[family], statistics=True))
        intervals, b_wall, b_cpu = timed(lambda: bootstrap_intervals(scored.statistics, args.resamples, seed=0))
        paired = evaluate_detailed(predictions + other_system, references + references, metrics=[family], statistics=True)
        _, c_wall, c_cpu = timed(lambda: compare_systems(paired.statistics, args.resamples, args.resamples, seed=0))
        total[0] += b_wall
        total[1] += b_cpu
        print(f"{family:<10} {wall:5.2f}/{cpu:5.2f} {b_wall:7.2f}/{b_cpu:7.2f} {c_wall:7.2f}/{c_cpu:7.2f}")
        first = next(iter(intervals))
        print(f"{'':<10} e.g. {first} = {intervals[first].estimate:.4f} "
              f"[{intervals[first].low:.4f}, {intervals[first].high:.4f}]")
    print(f"bootstrap of all families: {total[0]:.2f} s wall, {total[1]:.2f} s cpu")


if __name__ == "__main__":
    main()
