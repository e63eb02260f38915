"""stemmock's mock server: MusicAPI and api.box, served from their OpenAPI specs."""

from __future__ import annotations

from .app import create_app
from .config import MockConfig, load_config
from .version import __version__

__all__ = ["MockConfig", "__version__", "create_app", "load_config"]
