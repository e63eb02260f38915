"""`python -m mockserver` is `stemmock serve`."""

from __future__ import annotations

from .cli import serve

if __name__ == "__main__":
    serve(prog_name="python -m mockserver", auto_envvar_prefix="STEMMOCK")
