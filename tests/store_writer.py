"""A stand-in stream worker for the store tests: writes batches of a shared message pool through
the Recorder, with redeliveries, and says on stdout which batch it finished."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aigc_eval import columns as col  # noqa: E402
from aigc_eval.store import Recorder, RunInfo  # noqa: E402


def pool_row(i: int) -> dict[str, object]:
    """Image i of the pool: a fixed row so that every redelivery writes the same values."""
    return {col.ID: f"img-{i:05d}", col.CATEGORY: ("cake", "shoe", "lamp")[i % 3], col.STATUS: col.STATUS_OK,
            col.TOTAL_SCORE: (i % 97) / 97, col.CLIP_SCORE: (i % 13) / 13, col.SCORED_AT: f"2026-11-{1 + i % 28:02d}T08:00:00Z"}


def main() -> int:
    url, worker, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    delay = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    rng = random.Random(worker)
    ids = list(range(first, last))
    run = RunInfo(run_id="stream-test", generator_version="v1")
    with Recorder.open(url, source="stream", run=run) as recorder:
        for start in range(0, len(ids), 25):
            batch = ids[start:start + 25]
            # a redelivery: some images of earlier batches come again
            batch += rng.sample(ids[:start + 1], min(5, start + 1))
            recorder.record([pool_row(i) for i in batch])
            print(json.dumps({"worker": worker, "done": start + 25}), flush=True)
            time.sleep(delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
