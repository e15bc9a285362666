"""Turning CSV rows into model-ready tensors: fetch, decode and transform in worker threads.

Each image is fetched and decoded once, then every transform given (one per model) runs on
it, so `main.py --input` feeds both models from one download. Rows come back in input
order; only a bounded window of decoded images is held at a time.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from PIL import Image

from image_fetch import FetchConfig, ImageError, load_image, new_session

Transform = Callable[[Image.Image], torch.Tensor]
T = TypeVar("T")


@dataclass
class PreparedRow:
    """One input row with a tensor per transform, or the reason it has none."""

    row: dict[str, str]
    inputs: tuple[torch.Tensor, ...] | None
    error: str = ""


def prepare_rows(
    rows: Iterable[dict[str, str]],
    image_col: str,
    transforms: Sequence[Transform],
    config: FetchConfig,
    workers: int = 4,
    base_dir: Path | None = None,
) -> Iterator[PreparedRow]:
    """Yield a PreparedRow for every row, in order; image failures become `error` text.

    Relative image paths are read from `base_dir` (the input CSV's folder).
    """
    local = threading.local()

    def prepare(row: dict[str, str]) -> PreparedRow:
        if not hasattr(local, "session"):
            local.session = new_session(config)
        try:
            image = load_image(row.get(image_col, ""), config, local.session, base_dir)
            return PreparedRow(row, tuple(transform(image) for transform in transforms))
        except ImageError as exc:
            return PreparedRow(row, None, str(exc))
        except Exception as exc:  # a transform or codec failing on one odd image must not stop the run
            return PreparedRow(row, None, f"cannot prepare image: {type(exc).__name__}: {exc}")

    window = max(1, workers) * 4
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fetch") as pool:
        pending: deque[Future[PreparedRow]] = deque()
        for row in rows:
            pending.append(pool.submit(prepare, row))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stack_inputs(items: Sequence[PreparedRow], slot: int, device: torch.device) -> torch.Tensor:
    """Stack the `slot`-th tensor of each prepared row into one batch on `device`."""
    return torch.stack([item.inputs[slot] for item in items]).to(device)
