"""Start-up time of the command line and of ``import hf_rrg``, each in a fresh interpreter (median of N runs).

    python benchmarks/bench_startup.py [--repeats 7]

Times `hf-rrg --help`, `hf-rrg label` on 50 reports, `hf-rrg evaluate` (BLEU, ROUGE-L, CIDEr-D, clinical efficacy)
on 50 prediction/reference pairs, `python -m hf_rrg --help`, `python -c "import hf_rrg"`, and for comparison what
a model user pays once (`import hf_rrg` + an Auto class: torch, transformers and the models), which is what every
command paid before the package import was lazy. Prints the machine, the load average before and after (other
processes distort the figures: say so when you quote them) and, per command, the median, min and max wall time and
whether torch was imported. Run by hand; the figures go in docs/performance.md ("Start-up").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPORTS = [
    "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
    "Mild cardiomegaly. Small left pleural effusion. No pneumothorax.",
    "Patchy opacity in the right lower lobe, possibly pneumonia. No effusion.",
    "Stable postoperative changes. Sternotomy wires intact. No acute disease.",
    "Pulmonary vascular congestion and interstitial edema. Bilateral small effusions.",
]
TORCH_CHECK = "; import sys; print('torch' in sys.modules, file=sys.stderr)"


def write_inputs(folder: Path, count: int = 50) -> tuple[Path, Path]:
    """`count` reports (CheXpert CSV) and `count` prediction/reference pairs (JSONL) in `folder`."""
    reports = [REPORTS[i % len(REPORTS)] for i in range(count)]
    csv = folder / "reports.csv"
    csv.write_text("".join(f'"{report}"\n' for report in reports), encoding="utf-8")
    predictions = folder / "predictions.jsonl"
    lines = [
        {"id": i, "prediction": report, "reference": reports[(i + 1) % count]}
        for i, report in enumerate(reports)
    ]
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return csv, predictions


def commands(folder: Path, csv: Path, predictions: Path) -> dict[str, list[str]]:
    """Name -> argv of every timed command; the CLI runs through `python -c` so that it can report torch."""
    python = sys.executable

    def cli(*args: str) -> list[str]:
        code = (
            f"import sys\nfrom hf_rrg.cli import main\ntry:\n    code = main({list(args)!r})\n"
            "except SystemExit as done:\n    code = done.code\n"
            "print('torch' in sys.modules, file=sys.stderr)\nsys.exit(code)"
        )
        return [python, "-c", code]

    timed = {
        "hf-rrg --help": cli("--help"),
        "hf-rrg label (50 reports)": cli(
            "label", str(csv), "--out", str(folder / "labels.csv"), "--no-progress"
        ),
        "hf-rrg evaluate (50 pairs)": cli(
            "evaluate",
            str(predictions),
            "--metrics",
            "bleu,rouge_l,cider_d,ce",
            "--out",
            str(folder / "scores.json"),
        ),
        "python -m hf_rrg --help": [python, "-m", "hf_rrg", "--help"],
        'python -c "import hf_rrg"': [python, "-c", "import hf_rrg" + TORCH_CHECK],
        "import hf_rrg + AutoModelForImageTextToText (models loaded)": [
            python,
            "-c",
            "import hf_rrg; from transformers import AutoModelForImageTextToText" + TORCH_CHECK,
        ],
    }
    console_script = shutil.which("hf-rrg")
    if console_script:
        timed["hf-rrg --help (console script)"] = [console_script, "--help"]
    return timed


def time_command(argv: list[str], repeats: int) -> tuple[list[float], str]:
    """Wall times of `repeats` fresh runs of `argv` (one warm-up run first), and whether it imported torch."""
    torch_loaded, times = "?", []
    for run in range(repeats + 1):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        lines = done.stderr.strip().splitlines()
        if lines and lines[-1] in ("True", "False"):
            torch_loaded = "yes" if lines[-1] == "True" else "no"
        if run > 0:  # the first run only fills the OS file cache
            times.append(elapsed)
    return times, torch_loaded


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7, help="runs per command (median reported)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv, predictions = write_inputs(folder)
        results = {
            name: time_command(argv, args.repeats)
            for name, argv in commands(folder, csv, predictions).items()
        }
    load_after = os.getloadavg()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    )
    print(f"load average (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after: {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}")  # fmt: skip
    print(f"{'command':<62} {'median':>8} {'min':>7} {'max':>7}  torch")
    for name, (times, torch_loaded) in results.items():
        print(
            f"{name:<62} {statistics.median(times):>7.2f}s {min(times):>6.2f}s {max(times):>6.2f}s  {torch_loaded}"
        )


if __name__ == "__main__":
    main()
