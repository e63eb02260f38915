"""The mock's state: the `Store` interface and its records, the memory and Redis stores, and the factory.

This is the only code that mutates mock state. `memory.py` and `redis.py` import the interface (`base.py`),
never each other; `open_store` picks one from the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import CallState, CountedRandom, Job, Record, StaleIds, Store
from .memory import MemoryStore

if TYPE_CHECKING:
    from ..config import MockConfig

__all__ = ["CallState", "CountedRandom", "Job", "MemoryStore", "Record", "StaleIds", "Store", "open_store"]


def open_store(config: MockConfig) -> Store:
    """The store `config.store` names: `memory`, or `redis://host:port/db` shared by every worker using it."""
    default = {"credits": config.default_credits, "extra_credits": config.default_extra_credits}
    opening = {k: {"credits": v.credits, "extra_credits": v.extra_credits} for k, v in (config.keys or {}).items()}
    if config.store == "memory":
        return MemoryStore(default, config.journal_size, opening, config.retention.max_tasks)
    try:
        from .redis import RedisStore  # only a shared store needs the Redis client
    except ImportError as exc:
        if exc.name not in ("redis", "redis.client"):
            raise
        from ..config import ConfigError

        raise ConfigError(f"store: {config.store} needs the Redis client, which is not installed; expected it "
                          "installed with: pip install 'stemmock[redis]'.") from None
    return RedisStore(config.store, default, config.journal_size, opening,
                      lease=config.callbacks.timeout + config.callbacks.grace + 30,
                      max_records=config.retention.max_tasks, ttl=config.retention.tasks)
