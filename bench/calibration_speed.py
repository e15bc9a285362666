"""What calibrate.py costs on 100,000 labelled rows (without --embeddings): the issue's target is at
most a minute on this machine.

    .venv/bin/python -m bench.calibration_speed                  # 100,000 rows, 1 round
    .venv/bin/python -m bench.calibration_speed --rows 5000      # a quick smoke run

Writes a synthetic result_total.csv (three terms, two images per request, 8 categories so that
per-category weights are fitted) and labels.csv drawn from a known logistic model, then times
run_calibration end to end (reading both CSVs, the grouped CV over the C grid, the bootstrap
intervals, the reports and calibration.json). Prints the seconds and the CPU.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from calibration_data import known_model, verdict_rows, write_labels, write_scores  # noqa: E402

from aigc_eval.calibration.stage import CalibrateOptions, run_calibration  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(rows: int, folder: Path) -> float:
    X, _, y, ids = known_model(rows, seed=9)
    categories = np.array([f"cat{i % 8}" for i in range(rows)], dtype=object)
    scores = write_scores(folder / "result_total.csv", ids, X, categories=categories)
    labels = write_labels(folder / "labels.csv", verdict_rows(ids, y))
    options = CalibrateOptions(scores=scores, labels=labels, output=folder / "calibration.json",
                               report_csv=folder / "calibration_report.csv", report_html=folder / "calibration_report.html")
    start = time.perf_counter()
    code = run_calibration(options)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"calibration exited {code}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        seconds = run(args.rows, Path(tmp))
    import os

    print(f"calibration of {args.rows} labelled rows: {seconds:.1f} s on {cpu_name()} ({os.cpu_count()} cores visible)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
