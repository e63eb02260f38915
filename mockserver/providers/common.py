"""What both providers derive the same way: stable durations from a seed, and whether a task has failed."""

from __future__ import annotations

import hashlib
from typing import Any


def duration_for(seed: str, low: float = 60.0, high: float = 240.0) -> float:
    """A stable, plausible duration (seconds, two decimals) derived from `seed`."""
    fraction = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") / 2**32
    return round(low + (high - low) * fraction, 2)


def failed(task: dict[str, Any]) -> bool:
    """Whether the task's callbacks report a failure (it was told to fail, or `Prefer: scenario=callback_fails`)."""
    return bool(task.get("failed")) or task.get("scenario") == "callback_fails"
