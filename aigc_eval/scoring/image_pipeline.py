"""Turning CSV rows into model-ready tensors: fetch, decode and transform in worker threads.

Each image is fetched and decoded once, then every stage's transform (one per model) runs
on it, so `main.py --input` feeds both models from one download. A stage whose features
for this image content are already in the score cache gets them instead, and an image
every stage has cached is not decoded at all. Rows come back in input order; only a
bounded window of prepared images is held at a time.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
import requests
from PIL import Image

from aigc_eval.io.image_fetch import (
    FetchConfig,
    ImageError,
    decode_image,
    fetch_image_with_digest,
    new_session,
)

PREPROCESSING_VERSION = "v4"  # part of the score cache's keys: bump when decoding or transforms change
T = TypeVar("T")


class PixelTransform:
    """PIL image -> uint8 (3, size, size) tensor in the worker threads; `normalise` turns a
    stacked batch into the model's float input in the scoring thread.

    Equal, within 3 of 255 grey levels (under 0.3 on average), to torchvision's
    Resize((size, size)) on the PIL image + ToTensor + Normalize(mean, std). The resize is
    torch's antialiased uint8 kernel (what torchvision's tensor Resize uses), about 4x
    faster than Pillow's. The float work runs once per batch instead of per image in
    threads that would fight the model for the cores.
    """

    def __init__(self, size: int, mode: str, mean: Sequence[float], std: Sequence[float]):
        if mode not in ("bilinear", "bicubic"):
            raise ValueError(f"resize mode must be bilinear or bicubic, got {mode!r}")
        self.size = size
        self.mode = mode
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)
        if pixels.shape[-2:] != (self.size, self.size):
            pixels = F.interpolate(pixels, size=(self.size, self.size), mode=self.mode, antialias=True)
        return pixels[0]

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> float32 normalised, on the batch's device."""
        mean, std = self.mean.to(pixels.device), self.std.to(pixels.device)
        return (pixels.float().div_(255.0) - mean) / std


class RowCheck(Protocol):
    """A check that runs on each decoded image in the worker threads, beside the models' inputs."""

    decode_size: int  # decode images down to no less than this on their shorter side

    def __call__(self, row: dict[str, str], image: Image.Image, data: bytes, session: Any) -> dict[str, object]: ...

    def failed(self, reason: str) -> dict[str, object]:
        """The result for a row whose image could not be fetched or decoded."""
        ...


class Stage(Protocol):
    """What a scorer offers the preparation step."""

    transform: PixelTransform
    input_size: int

    def cached_features(self, digest: str) -> torch.Tensor | None: ...


@dataclass
class PreparedRow:
    """One input row: per stage either a model input or cached features; or an error."""

    row: dict[str, str]
    digest: str = ""
    inputs: list[torch.Tensor | None] = field(default_factory=list)
    cached: list[torch.Tensor | None] = field(default_factory=list)
    error: str = ""
    extra: dict[str, object] = field(default_factory=dict)  # what `prepare_rows(extra=...)` gave

    @property
    def ok(self) -> bool:
        return not self.error


class FetchPool:
    """Fetch threads with one HTTP session each (its keep-alive connections), for prepare_rows.

    A long-lived caller (the HTTP service, a stream worker) keeps one across batches, so images
    and cut-outs from the same host reuse connections instead of paying a TCP and TLS handshake
    in every batch. Closing it stops the threads and closes the sessions."""

    def __init__(self, config: FetchConfig, workers: int):
        self.config, self.workers = config, max(1, workers)
        self.executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fetch")
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def session(self) -> requests.Session:
        """The calling fetch thread's session, created on first use."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session(self.config)
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Wait for running fetches, drop queued ones, close every session."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def __enter__(self) -> "FetchPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare_rows(
    rows: Iterable[dict[str, str]],
    image_col: str,
    stages: Sequence[Stage],
    config: FetchConfig,
    workers: int = 4,
    base_dir: Path | None = None,
    ahead: int = 0,
    extra: RowCheck | None = None,
    pool: FetchPool | None = None,
) -> Iterator[PreparedRow]:
    """Yield a PreparedRow for every row, in order; image failures become `error` text.

    The work runs in `pool` (kept by the caller, its sessions reused across calls; fetched with
    the pool's FetchConfig) or, without one, in a pool of `workers` threads for this call.

    `extra`, when given, runs in the worker thread on every decoded image (the product check):
    its result goes to `PreparedRow.extra`, and images are then decoded down to no less than
    its `decode_size` and always decoded, cached features or not.

    Relative image paths are read from `base_dir` (the input CSV's folder). JPEGs are
    decoded at the smallest DCT scale that still covers the largest model input. At most
    max(`ahead`, 8 per worker) rows are prepared or in preparation beyond those yielded:
    two batches' worth keeps the workers busy while a model loads.
    """
    decode_size = max([stage.input_size for stage in stages] + [extra.decode_size if extra else 0])

    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(FetchPool(config, workers))
        yield from _prepare_in(pool, rows, image_col, stages, base_dir, decode_size,
                               max(pool.workers * 8, ahead), extra)


def _prepare_in(pool: FetchPool, rows: Iterable[dict[str, str]], image_col: str, stages: Sequence[Stage],
                base_dir: Path | None, decode_size: int, window: int, extra: RowCheck | None) -> Iterator[PreparedRow]:
    config = pool.config

    def prepare(row: dict[str, str]) -> PreparedRow:
        session = pool.session()
        try:
            data, digest = fetch_image_with_digest(row.get(image_col, ""), config, session, base_dir)
            cached = [stage.cached_features(digest) for stage in stages]
            inputs: list[torch.Tensor | None] = [None] * len(stages)
            checked: dict[str, object] = {}
            if any(c is None for c in cached) or extra is not None:
                image = decode_image(data, config.max_pixels, decode_size)
                inputs = [stage.transform(image) if c is None else None for stage, c in zip(stages, cached)]
                checked = extra(row, image, data, session) if extra is not None else {}
            return PreparedRow(row, digest, inputs, cached, extra=checked)
        except ImageError as exc:
            return _failed(row, str(exc))
        except Exception as exc:  # a transform or codec failing on one odd image must not stop the run
            return _failed(row, f"cannot prepare image: {type(exc).__name__}: {exc}")

    def _failed(row: dict[str, str], reason: str) -> PreparedRow:
        return PreparedRow(row, error=reason, extra=extra.failed(reason) if extra is not None else {})

    pending: deque[Future[PreparedRow]] = deque()
    try:
        for row in rows:
            pending.append(pool.executor.submit(prepare, row))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # closed early (a stopped caller): what has not started is not needed
        for future in pending:
            future.cancel()


def warm_up_when_needed(items: Iterable[PreparedRow], warm_ups: Sequence[Callable[[], object]]) -> Iterator[PreparedRow]:
    """Pass `items` through, calling `warm_ups[slot]` once when the first row that needs the
    slot-th stage's model goes by (an ok row whose features for it are not cached): the model
    then loads while the rest of the first batch is fetched, and a fully cached run loads none."""
    waiting = dict(enumerate(warm_ups))
    for item in items:
        if waiting and item.ok:
            for slot in [slot for slot in waiting if item.cached[slot] is None]:
                waiting.pop(slot)()
        yield item


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


def pending_inputs(items: Sequence[PreparedRow], slot: int) -> torch.Tensor | None:
    """The stacked inputs of the `slot`-th stage for the ok items it has no cached features
    for, in order; None when there are none."""
    todo = [item.inputs[slot] for item in items if item.ok and item.cached[slot] is None]
    return torch.stack(todo) if todo else None


def features_for(
    items: Sequence[PreparedRow], slot: int, compute: Callable[[torch.Tensor], torch.Tensor],
    computed: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[tuple[str, torch.Tensor]]]:
    """Features of the `slot`-th stage for each ok item, in order: cached ones as they are, the
    others from one `compute` call on their pending_inputs, or from `computed` when that is
    already known (computed elsewhere, as ModelLanes does). Also returns the new
    (digest, features) pairs for the cache."""
    if computed is None:
        inputs = pending_inputs(items, slot)
        computed = compute(inputs) if inputs is not None else None
    fresh = iter(computed if computed is not None else [])
    features, new = [], []
    for item in items:
        if not item.ok:
            continue
        if item.cached[slot] is not None:
            features.append(item.cached[slot])
        else:
            vector = next(fresh)
            features.append(vector)
            new.append((item.digest, vector))
    return features, new
