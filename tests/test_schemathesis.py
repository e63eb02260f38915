"""Schemathesis runs against the live mock for both specs: examples, coverage, fuzzing and stateful phases."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.live import LiveServer
from mockserver import MockConfig, create_app
from mockserver.config import KeyConfig
from mockserver.spec import spec_path

HERE = Path(__file__).parent
KEY = "schemathesis-key"
# Checks that read a rejection from the HTTP status; api.box documents HTTP 200 with the code in the body.
NOT_APPLICABLE = {"musicapi": [], "apibox": ["ignored_auth", "missing_required_header", "negative_data_rejection"],
                  "control": []}


@pytest.fixture()
def keyed_server() -> Iterator[LiveServer]:
    """A fresh mock that knows one API key (so a wrong key is refused) with credits enough for the whole run.

    Its clock is manual and never advanced by the provider runs, so the callback URLs Schemathesis invents
    are never called: traffic stays on loopback.
    """
    config = MockConfig(keys={KEY: KeyConfig(credits=10_000_000)}, clock="manual")
    with LiveServer(create_app(config)) as server:
        yield server


@pytest.mark.parametrize("provider", ["musicapi", "apibox", "control"])
def test_schemathesis_finds_no_failure(keyed_server: LiveServer, provider: str, tmp_path: Path) -> None:
    """Every applicable Schemathesis check passes in every phase against the running mock."""
    config_file = HERE / "schemathesis" / f"{provider}.toml"
    config = ["--config-file", str(config_file)] if config_file.exists() else []
    command = [
        sys.executable, "-m", "schemathesis.cli", *config,
        "run", str(spec_path(provider)), "--url", keyed_server.url, "-H", f"Authorization: Bearer {KEY}",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "25",
        "--seed", "20261121", "--request-timeout", "10", "--report", "junit", "--report-dir", str(tmp_path),
    ]
    if NOT_APPLICABLE[provider]:
        command += ["--exclude-checks", ",".join(NOT_APPLICABLE[provider])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Tested: " in result.stdout
