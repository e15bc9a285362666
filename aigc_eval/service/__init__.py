"""Building blocks of the HTTP scoring service: dynamic batching of concurrent requests, with
deadline-aware admission (admission.py)."""

from aigc_eval.service.batcher import (
    DeadlineExceeded,
    DynamicBatcher,
    QueueFull,
    ShuttingDown,
)

__all__ = ["DeadlineExceeded", "DynamicBatcher", "QueueFull", "ShuttingDown"]
