"""stemmock's mock server: MusicAPI and api.box, served from their OpenAPI specs."""

from __future__ import annotations

from .app import create_app
from .config import MockConfig, load_config

__all__ = ["MockConfig", "create_app", "load_config"]
__version__ = "0.1.0"
