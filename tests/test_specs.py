"""The provider specs are valid OpenAPI 3.1, and every example in them validates against its own schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from mockserver.spec import PROVIDER_SPECS, compile_schema, load, spec_path


def examples_of(name: str) -> Iterator[tuple[str, Any, Any]]:
    """(where, schema validator, example value) for every named example of a spec."""
    spec = load(spec_path(name))
    for op in spec.operations:
        for example, value in op.body_examples.items():
            yield f"{op.key} request {example}", op.body_validator, value
        for status, doc in op.responses.items():
            for example, value in doc.examples.items():
                yield f"{op.key} {status} {example}", doc.validator, value
        for callback in op.callbacks.values():
            for example, value in callback.examples.items():
                yield f"{op.key} callback {callback.name} {example}", callback.validator, value
        raw = spec.document["paths"][op.path][op.method.lower()]
        for param in raw.get("parameters") or ():
            for example, value in (param.get("examples") or {}).items():
                yield f"{op.key} parameter {param['name']} {example}", compile_schema(param["schema"]), value["value"]


@pytest.mark.parametrize("name", PROVIDER_SPECS)
def test_spec_is_valid_openapi_31(name: str) -> None:
    """openapi-spec-validator accepts the spec as OpenAPI 3.1."""
    document = yaml.safe_load(spec_path(name).read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize("name", PROVIDER_SPECS)
def test_every_example_validates_against_its_schema(name: str) -> None:
    """Each request, response, callback and parameter example is valid against the schema it illustrates."""
    checked, failures = 0, []
    for where, validator, value in examples_of(name):
        checked += 1
        failures += [f"{where}: {e.message} at {list(e.instance_path)}" for e in validator.iter_errors(value)]
    assert checked > 20
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", PROVIDER_SPECS)
def test_every_operation_documents_its_errors_and_is_secured(name: str) -> None:
    """Each operation needs the bearer key, and documents 400, 401 and 500 in the provider's transport."""
    spec = load(spec_path(name))
    for op in spec.operations:
        assert op.secured, op.key
        assert {400, 401, 500} <= set(op.documented_codes), op.key


def test_apibox_documents_every_body_code() -> None:
    """Every api.box operation lists the eleven documented body codes, all on HTTP 200."""
    spec = load(spec_path("apibox"))
    for op in spec.operations:
        assert set(op.responses) == {200}, op.key
        assert set(op.documented_codes) == {200, 400, 401, 404, 405, 413, 422, 429, 430, 455, 500}, op.key


def test_callbacks_and_links_are_declared() -> None:
    """Operations taking callBackUrl declare callbacks; create/generate link to their polling operation."""
    box = load(spec_path("apibox"))
    assert box.by_id["separateVocals"].callbacks["vocalRemovalResult"].url_field == "callBackUrl"
    assert box.by_id["generateMusic"].callbacks["musicGenerationResult"].url_field == "callBackUrl"
    links = box.document["paths"]["/api/v1/generate"]["post"]["responses"]["200"]["links"]
    assert any(link["operationId"] == "getMusicGenerationDetails" for link in links.values())
    music = load(spec_path("musicapi"))
    links = music.document["paths"]["/api/v1/sonic/create"]["post"]["responses"]["200"]["links"]
    assert any(link["operationId"] == "getTask" for link in links.values())
