"""The files a client downloads: real MP3s (`audio`), JPEG covers (`covers`), and `/files/*` serving them (`serve`).

A file URL carries all that is needed to make the file again, so the mock keeps no per-file state.
"""

from __future__ import annotations

from .serve import FileServer

__all__ = ["FileServer"]
