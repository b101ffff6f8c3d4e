"""Throughput of `CheXpertLabeler` on the 3,927 real IU X-Ray reports (FINDINGS + IMPRESSION).

    python benchmarks/bench_labeler.py [--tgz ../shared/data/iu_xray/NLMCXR_reports.tgz] [--repeats 3]

Prints reports per second (best of `--repeats` passes) and mean report length. Run by hand; the
figure goes in docs/labeler.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_labeler_iu import DEFAULT_TGZ, read_iu_reports  # noqa: E402

from hf_rrg.labeling import CheXpertLabeler  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tgz", type=Path, default=DEFAULT_TGZ)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    reports = [r.text for r in read_iu_reports(args.tgz)]
    started = time.perf_counter()
    labeler = CheXpertLabeler()
    setup = time.perf_counter() - started
    best = float("inf")
    for _ in range(args.repeats):
        started = time.perf_counter()
        labeler.label_matrix(reports)
        best = min(best, time.perf_counter() - started)
    words = sum(len(r.split()) for r in reports) / len(reports)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, one process")
    print(f"labeler set-up: {setup * 1000:.1f} ms")
    print(f"{len(reports)} IU X-Ray reports (mean {words:.0f} words): best of {args.repeats}: {best:.2f} s "
          f"= {len(reports) / best:.0f} reports/s ({best / len(reports) * 1e6:.0f} us/report)")


if __name__ == "__main__":
    main()
