"""Operability: packaging, the CLI's conveniences, the verification API, health and the served specs."""

from __future__ import annotations

import importlib.metadata
import re

import httpx
from packaging.requirements import Requirement

from tests.conftest import MockHandle


def test_package_metadata_pins_jsonschema_rs_and_names_an_spdx_license() -> None:
    """The installed metadata requires jsonschema-rs 0.41..1, plain uvicorn with uvloop and httptools, and MIT."""
    meta = importlib.metadata.metadata("stemmock")
    requires = {Requirement(r).name: Requirement(r) for r in meta.get_all("Requires-Dist") or [] if "extra" not in r}
    assert str(requires["jsonschema-rs"].specifier) in ("<1,>=0.41", ">=0.41,<1")
    assert not requires["uvicorn"].extras
    assert {"uvloop", "httptools"} <= set(requires)
    assert meta.get("License-Expression") == "MIT"


def test_violation_pointer_and_did_you_mean_survive_the_validator(client: httpx.Client, mock: MockHandle) -> None:
    """A misspelled enum value reaches the journal with its JSON pointer and the nearest valid name."""
    body = {"taskId": "t", "audioId": "a", "callBackUrl": "http://127.0.0.1:9/cb", "type": "separate_vocals"}
    answer = client.post("/api/v1/vocal-removal/generate", json=body)
    assert answer.status_code == 200 and answer.json()["code"] in (400, 422)
    violations = mock.journal()[-1]["violations"]
    pointers = {v["pointer"]: v for v in violations}
    assert "/body/type" in pointers, violations
    assert re.search(r"Did you mean 'separate_vocal'\?", pointers["/body/type"]["message"])
