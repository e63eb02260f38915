"""The providers: one module each (`musicapi`, `apibox`), what both share (`common`), and the `registry` of
what they bring. Importing this package registers them; nothing outside it imports a provider by name."""

from __future__ import annotations

from . import apibox, musicapi  # noqa: F401  (imported for their registrations)
from .registry import ACTIONS, CALLBACKS, JOBS, Action, Callbacks, Context, Reply

__all__ = ["ACTIONS", "CALLBACKS", "JOBS", "Action", "Callbacks", "Context", "Reply", "load_actions"]


def load_actions() -> dict[str, Action]:
    """The registry of behaviours, every provider's registered."""
    return ACTIONS
