"""Benchmark: hf-rrg's native BLEU + ROUGE-L + CIDEr-D against pycocoevalcap 1.2, side by side, in one run.

Pairs are real IU X-Ray findings (R2Gen's annotation.json, train split), each paired with another study's
report, repeated with shifted pairings until `--pairs` items; a report under 45 tokens is joined with the next
study's, giving ~60-token reports (words and punctuation, lower-cased).
Also checks that the scores agree. Run by hand:

    python benchmarks/bench_nlg_metrics.py --pairs 10000 [--data ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np


def make_pairs(data: Path, n_pairs: int, min_tokens: int = 45) -> tuple[list[str], list[str]]:
    """`n_pairs` (prediction, reference) pairs of real IU X-Ray reports, tokenised on words and punctuation."""
    annotation = json.loads((data / "iu_xray" / "annotation.json").read_text())
    reports = [" ".join(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", item["report"].lower())) for item in annotation["train"]]
    reports = [report for report in reports if report]
    # IU X-Ray findings average ~38 tokens: join each with the next study's until ~60 tokens.
    reports = [
        report if len(report.split()) >= min_tokens else f"{report} {reports[(index + 1) % len(reports)]}"
        for index, report in enumerate(reports)
    ]
    predictions, references = [], []
    shift = 1
    while len(predictions) < n_pairs:
        for index in range(len(reports)):
            predictions.append(reports[index])
            references.append(reports[(index + shift) % len(reports)])
            if len(predictions) == n_pairs:
                break
        shift += 1
    return predictions, references


def time_call(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per implementation")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from hf_rrg.metrics import bleu, cider_d, rouge_l

    predictions, references = make_pairs(args.data, args.pairs)
    words = np.mean([len(text.split()) for text in predictions])
    print(f"{len(predictions)} pairs, {words:.1f} tokens per report on average")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s) visible, "
          f"Python {platform.python_version()}, NumPy {np.__version__}")
    gts = {i: [ref] for i, ref in enumerate(references)}
    res = {i: [pred] for i, pred in enumerate(predictions)}

    rows = []
    for name, ours, theirs in (
        ("BLEU-1..4", lambda: bleu(predictions, references), lambda: Bleu(4).compute_score(gts, res, verbose=0)),
        ("ROUGE-L", lambda: rouge_l(predictions, references), lambda: Rouge().compute_score(gts, res)),
        ("CIDEr-D", lambda: cider_d(predictions, references), lambda: Cider().compute_score(gts, res)),
    ):
        t_ref, ref_result = time_call(theirs, args.repeats)
        t_ours, our_result = time_call(ours, args.repeats)
        ref_corpus = ref_result[0][3] if name.startswith("BLEU") else ref_result[0]
        our_corpus = our_result["bleu_4"] if name.startswith("BLEU") else our_result.score
        rows.append((name, t_ref, t_ours, abs(float(ref_corpus) - our_corpus)))

    print(f"{'metric':<10} {'pycocoevalcap s':>16} {'hf-rrg s':>10} {'speed-up':>9} {'|diff|':>9}")
    for name, t_ref, t_ours, diff in rows:
        print(f"{name:<10} {t_ref:>16.3f} {t_ours:>10.3f} {t_ref / t_ours:>8.1f}x {diff:>9.1e}")
    total_ref = sum(row[1] for row in rows)
    total_ours = sum(row[2] for row in rows)
    print(f"{'total':<10} {total_ref:>16.3f} {total_ours:>10.3f} {total_ref / total_ours:>8.1f}x")


if __name__ == "__main__":
    main()
