"""Unit tests for mockserver.spec: $ref resolution, Operation records and the bundled specs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mockserver import spec
from mockserver.spec import SpecError, from_dict, resolve_refs

SPECS = Path(__file__).parent / "specs"


def _document(name: str) -> dict[str, Any]:
    return yaml.safe_load((SPECS / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def status_spec() -> spec.Spec:
    return from_dict(_document("tiny_status.yaml"), "tiny_status")


@pytest.fixture(scope="module")
def body_spec() -> spec.Spec:
    return from_dict(_document("tiny_body.yaml"), "tiny_body")


# -- resolve_refs ---------------------------------------------------------------------------------


def test_resolve_refs_inlines_a_local_ref() -> None:
    """Replaces a `$ref` with the node it points to."""
    root = {"defs": {"Name": {"type": "string", "minLength": 1}}}
    assert resolve_refs({"$ref": "#/defs/Name"}, root) == {"type": "string", "minLength": 1}


def test_resolve_refs_sibling_keys_override_the_target() -> None:
    """Lets sibling keys of a `$ref` override and extend the target's keys."""
    root = {"defs": {"Name": {"type": "string", "description": "target"}}}
    node = {"$ref": "#/defs/Name", "description": "sibling", "maxLength": 5}
    assert resolve_refs(node, root) == {"type": "string", "description": "sibling", "maxLength": 5}


def test_resolve_refs_resolves_nested_refs() -> None:
    """Resolves refs inside the target, inside lists, and refs that point at refs."""
    root = {
        "defs": {
            "Id": {"type": "string"},
            "Alias": {"$ref": "#/defs/Id"},
            "Pair": {"type": "object", "properties": {"a": {"$ref": "#/defs/Alias"}},
                     "allOf": [{"$ref": "#/defs/Id"}]},
        }
    }
    resolved = resolve_refs({"$ref": "#/defs/Pair"}, root)
    assert resolved == {"type": "object", "properties": {"a": {"type": "string"}}, "allOf": [{"type": "string"}]}


def test_resolve_refs_reuses_a_target_in_several_places() -> None:
    """Resolves the same target twice in one node without calling it circular."""
    root = {"defs": {"Id": {"type": "string"}}}
    node = {"properties": {"a": {"$ref": "#/defs/Id"}, "b": {"$ref": "#/defs/Id"}}}
    assert resolve_refs(node, root) == {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}}


def test_resolve_refs_decodes_json_pointer_escapes() -> None:
    """Reads `~1` as `/` and `~0` as `~` in a ref's path."""
    root = {"paths": {"/a/b": {"x~y": {"type": "integer"}}}}
    assert resolve_refs({"$ref": "#/paths/~1a~1b/x~0y"}, root) == {"type": "integer"}


def test_resolve_refs_does_not_mutate_the_input() -> None:
    """Leaves the node and the root it reads unchanged."""
    root = {"defs": {"Id": {"type": "string"}}, "use": {"$ref": "#/defs/Id", "title": "t"}}
    before = copy.deepcopy(root)
    resolve_refs(root, root)
    assert root == before


def test_resolve_refs_rejects_a_circular_ref() -> None:
    """Raises SpecError naming the ref when a schema refers back to itself."""
    root = {"defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/defs/Node"}}}}}
    with pytest.raises(SpecError, match=r"'#/defs/Node' is circular"):
        resolve_refs({"$ref": "#/defs/Node"}, root)


def test_resolve_refs_rejects_a_ref_cycle_between_two_targets() -> None:
    """Raises SpecError for A -> B -> A."""
    root = {"defs": {"A": {"$ref": "#/defs/B"}, "B": {"items": {"$ref": "#/defs/A"}}}}
    with pytest.raises(SpecError, match="circular"):
        resolve_refs({"$ref": "#/defs/A"}, root)


def test_resolve_refs_rejects_a_non_local_ref() -> None:
    """Raises SpecError for a ref into another document."""
    with pytest.raises(SpecError, match=r"'other\.yaml#/defs/X' is not local"):
        resolve_refs({"$ref": "other.yaml#/defs/X"}, {})


def test_resolve_refs_rejects_a_dangling_ref() -> None:
    """Raises SpecError when a local ref points nowhere."""
    with pytest.raises(SpecError, match="points nowhere"):
        resolve_refs({"$ref": "#/defs/Missing"}, {"defs": {}})


# -- from_dict --------------------------------------------------------------------------------------


def test_from_dict_reads_the_provider_block(status_spec: spec.Spec, body_spec: spec.Spec) -> None:
    """Reads name, transport, fields, messages and costs from x-mock-provider (with defaults)."""
    p = status_spec.provider
    assert (p.name, p.transport, p.code_field, p.message_field) == ("tinystatus", "status", "code", "message")
    assert p.messages[403] == "Out of credits."
    assert p.costs == {"clip": 5.0, "small": 1.0}
    assert p.outcomes == {"validation": 400, "credits": 403}
    assert not p.body_transport
    b = body_spec.provider
    assert (b.transport, b.message_field) == ("body", "msg")
    assert b.body_transport


def test_from_dict_builds_one_operation_per_method_and_path(status_spec: spec.Spec) -> None:
    """Creates an Operation for every method of every path, keyed by operationId."""
    keys = {op.operation_id: op.key for op in status_spec.operations}
    assert keys == {
        "createClip": "POST /v1/clips",
        "getClip": "GET /v1/clips/{clip_id}",
        "search": "GET /v1/search",
        "health": "GET /v1/health",
    }
    assert status_spec.by_id["createClip"].action == "tiny.create"
    assert status_spec.by_id["getClip"].action is None


def test_from_dict_names_an_operation_without_operation_id() -> None:
    """Falls back to `<method>_<path>` when operationId is absent."""
    document = {"openapi": "3.1.0", "x-mock-provider": {"name": "t"},
                "paths": {"/ping": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    assert from_dict(document).operations[0].operation_id == "get_/ping"


def test_from_dict_compiles_a_pattern_for_templated_paths(status_spec: spec.Spec) -> None:
    """Matches a templated path segment by name and leaves fixed paths without a pattern."""
    pattern = status_spec.by_id["getClip"].pattern
    assert pattern is not None
    match = pattern.match("/v1/clips/abc-123")
    assert match is not None and match.groupdict() == {"clip_id": "abc-123"}
    assert pattern.match("/v1/clips/abc/extra") is None
    assert pattern.match("/v1/clips/") is None
    assert status_spec.by_id["createClip"].pattern is None


def test_from_dict_escapes_literal_parts_of_a_templated_path() -> None:
    """Treats dots in a templated path literally."""
    document = {"openapi": "3.1.0", "x-mock-provider": {"name": "t"},
                "paths": {"/files/{name}.mp3": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    pattern = from_dict(document).operations[0].pattern
    assert pattern is not None
    assert pattern.match("/files/song.mp3")["name"] == "song"  # type: ignore[index]
    assert pattern.match("/files/songXmp3") is None


def test_from_dict_reads_params_from_path_item_and_operation(status_spec: spec.Spec) -> None:
    """Merges path-level and operation-level parameters; path params are always required."""
    params = {p.name: p for p in status_spec.by_id["getClip"].params}
    assert set(params) == {"clip_id", "verbose"}
    assert params["clip_id"].location == "path" and params["clip_id"].required
    assert params["verbose"].location == "query" and not params["verbose"].required
    search = {p.name: p for p in status_spec.by_id["search"].params}
    assert search["q"].required and search["q"].schema == {"type": "string"}
    assert search["X-Trace"].location == "header"
    assert search["limit"].validator.is_valid(5) and not search["limit"].validator.is_valid(51)


def test_from_dict_compiles_the_body_validator(status_spec: spec.Spec) -> None:
    """Resolves the body schema's $ref and compiles a validator that checks formats."""
    op = status_spec.by_id["createClip"]
    assert op.body_required
    assert op.body_schema is not None and op.body_schema["required"] == ["clip_id"]
    assert op.body_validator.is_valid({"clip_id": "a"})
    assert not op.body_validator.is_valid({})
    assert not op.body_validator.is_valid({"clip_id": "a", "url": "not a uri"})
    assert op.body_examples == {"minimal": {"clip_id": "abc"}}


def test_from_dict_has_no_body_for_a_get(status_spec: spec.Spec) -> None:
    """Leaves body fields empty when the operation takes no request body."""
    op = status_spec.by_id["search"]
    assert op.body_schema is None and op.body_validator is None and not op.body_required


def test_from_dict_reads_responses_and_examples(status_spec: spec.Spec) -> None:
    """Keeps each response's status, resolved schema, validator and named examples."""
    op = status_spec.by_id["createClip"]
    assert sorted(op.responses) == [200, 400, 401, 403, 404]
    forbidden = op.responses[403]
    assert forbidden.schema is not None and forbidden.schema["properties"]["code"] == {"type": "integer"}
    assert forbidden.examples == {"no_credits": {"code": 403, "message": "Example says no credits."}}
    assert op.responses[401].schema is None and op.responses[401].validator is None
    assert op.responses[200].validator.is_valid({"code": 200, "message": "ok"})
    assert not op.responses[200].validator.is_valid({"code": 201, "message": "ok"})
    assert op.examples() == {"created": (200, {"code": 200, "message": "ok"}),
                             "no_credits": (403, {"code": 403, "message": "Example says no credits."})}


def test_from_dict_names_a_single_example_default(status_spec: spec.Spec) -> None:
    """Stores a media type's lone `example` under the name `default`."""
    op = status_spec.by_id["getClip"]
    assert op.responses[200].examples == {"default": {"code": 200, "message": "ok"}}
    assert op.responses[202].examples == {"not_ready": {"type": "not_ready"}}


def test_from_dict_reads_callbacks(status_spec: spec.Spec) -> None:
    """Reads each callback's expression, schema, validator, examples and URL field."""
    op = status_spec.by_id["createClip"]
    assert list(op.callbacks) == ["clipDone"]
    cb = op.callbacks["clipDone"]
    assert cb.expression == "{$request.body#/callBackUrl}"
    assert cb.url_field == "callBackUrl"
    assert cb.examples == {"done": {"clip_id": "abc", "status": "done"}}
    assert cb.validator.is_valid({"clip_id": "a", "status": "done"})
    assert not cb.validator.is_valid({"clip_id": "a", "status": "lost"})


def test_callback_url_field_is_none_for_other_expressions() -> None:
    """Returns None when the expression does not name a request-body field."""
    cb = spec.CallbackDoc("x", "https://example.com/hook", {}, spec.compile_schema({}), {})
    assert cb.url_field is None


def test_from_dict_reads_security(status_spec: spec.Spec) -> None:
    """Inherits the document's security and honours an operation's `security: []`."""
    assert status_spec.by_id["createClip"].secured
    assert not status_spec.by_id["health"].secured


def test_documented_codes_for_status_transport_are_the_response_statuses(status_spec: spec.Spec) -> None:
    """Lists the documented HTTP statuses, sorted, for a status-transport provider."""
    assert status_spec.by_id["createClip"].documented_codes == (200, 400, 401, 403, 404)
    assert status_spec.by_id["getClip"].documented_codes == (200, 202, 404)


def test_documented_codes_for_body_transport_are_the_code_enum(body_spec: spec.Spec) -> None:
    """Lists the `code` enum of the 200 schema for a body-transport provider."""
    assert body_spec.by_id["split"].documented_codes == (200, 400, 401, 422, 429, 430)


def test_documented_codes_for_body_transport_read_a_const() -> None:
    """Counts a `const` code as documented for a body-transport provider."""
    document = {
        "openapi": "3.1.0", "x-mock-provider": {"name": "t", "transport": "body"},
        "paths": {"/x": {"get": {"responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"code": {"const": 200}}}}}}}}}},
    }
    assert from_dict(document).operations[0].documented_codes == (200,)


def test_success_status_is_the_lowest_2xx(status_spec: spec.Spec) -> None:
    """Picks the lowest documented 2xx status as the success status."""
    assert status_spec.by_id["getClip"].success_status() == 200


def test_example_for_code_by_status(status_spec: spec.Spec) -> None:
    """Finds the first example documented under the code's HTTP status (status transport)."""
    op = status_spec.by_id["createClip"]
    assert op.example_for_code(403) == ("no_credits", 403, {"code": 403, "message": "Example says no credits."})
    assert op.example_for_code(404) is None


def test_example_for_code_by_body_code(body_spec: spec.Spec) -> None:
    """Finds the example whose body `code` is the code (body transport), though its status is 200."""
    op = body_spec.by_id["split"]
    assert op.example_for_code(430) == ("too_fast", 200, {"code": 430, "msg": "Slow down, example.", "data": None})
    assert op.example_for_code(422) is None


def test_message_for_prefers_the_example_message(status_spec: spec.Spec, body_spec: spec.Spec) -> None:
    """Uses a documented example's message before the provider default, in the provider's message field."""
    assert status_spec.by_id["createClip"].message_for(403) == "Example says no credits."
    assert body_spec.by_id["split"].message_for(430) == "Slow down, example."


def test_message_for_falls_back_to_the_provider_default(status_spec: spec.Spec, body_spec: spec.Spec) -> None:
    """Uses the provider's message when no example documents the code, else 'Error <code>'."""
    assert status_spec.by_id["createClip"].message_for(404) == "Nothing here."
    assert body_spec.by_id["split"].message_for(429) == "The current credits are insufficient."
    assert status_spec.by_id["createClip"].message_for(418) == "Error 418"


def test_from_dict_requires_x_mock_provider() -> None:
    """Raises SpecError when the root lacks an x-mock-provider block."""
    document = _document("tiny_status.yaml")
    del document["x-mock-provider"]
    with pytest.raises(SpecError, match="x-mock-provider"):
        from_dict(document, "nameless")


def test_from_dict_requires_a_provider_name() -> None:
    """Raises SpecError when x-mock-provider has no name."""
    document = _document("tiny_status.yaml")
    document["x-mock-provider"] = {"transport": "status"}
    with pytest.raises(SpecError, match="x-mock-provider"):
        from_dict(document)


def test_from_dict_rejects_an_unknown_transport() -> None:
    """Raises SpecError for a transport other than 'status' or 'body'."""
    document = _document("tiny_status.yaml")
    document["x-mock-provider"]["transport"] = "header"
    with pytest.raises(SpecError, match="'header'"):
        from_dict(document)


def test_from_dict_rejects_a_non_3x_document() -> None:
    """Raises SpecError for a document that is not OpenAPI 3.x."""
    with pytest.raises(SpecError, match="3.x"):
        from_dict({"swagger": "2.0", "x-mock-provider": {"name": "t"}})


def test_load_reads_a_yaml_file(tmp_path: Path) -> None:
    """Loads a spec from a file, recording its path as the source."""
    loaded = spec.load(SPECS / "tiny_body.yaml")
    assert loaded.source.endswith("tiny_body.yaml")
    assert [op.operation_id for op in loaded.operations] == ["split"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(SpecError, match="not a mapping"):
        spec.load(bad)


# -- the bundled specs ------------------------------------------------------------------------------


def test_bundled_musicapi_spec_loads() -> None:
    """Loads the bundled MusicAPI spec with its status transport and operations."""
    loaded = spec.load(spec.spec_path("musicapi"))
    assert loaded.provider.name == "musicapi" and loaded.provider.transport == "status"
    assert set(loaded.by_id) == {"getVox", "uploadMusic", "createMusic", "getTask", "stemsBasic", "stemsFull",
                                 "getCredits"}
    assert loaded.by_id["getTask"].pattern is not None
    assert all(op.secured for op in loaded.operations)


def test_bundled_apibox_spec_loads() -> None:
    """Loads the bundled api.box spec with its body transport and operations."""
    loaded = spec.load(spec.spec_path("apibox"))
    assert loaded.provider.name == "apibox" and loaded.provider.transport == "body"
    assert loaded.provider.message_field == "msg"
    assert set(loaded.by_id) == {"separateVocals", "getVocalSeparationDetails", "generateMusic",
                                 "getMusicGenerationDetails", "getRemainingCredits"}
    assert loaded.by_id["separateVocals"].callbacks["vocalRemovalResult"].url_field == "callBackUrl"
    assert 200 in loaded.by_id["separateVocals"].documented_codes
