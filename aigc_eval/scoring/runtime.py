"""How a scoring run uses the machine: device, precision, batching, fetching, progress output."""

from __future__ import annotations

from dataclasses import dataclass, field

from aigc_eval.io.image_fetch import FetchConfig


@dataclass
class RuntimeOptions:
    """How a scoring run uses the machine: device, precision, batching, fetching, progress output."""

    device: str | None = None
    precision: str = "auto"
    batch_size: int = 32
    workers: int = 4
    fetch: FetchConfig = field(default_factory=FetchConfig)
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1:
            raise ValueError(f"--batch-size and --workers must be at least 1, got {self.batch_size} and {self.workers}")
