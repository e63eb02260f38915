"""Unit tests for mockserver.validation: security, parameters, body, x-mock rules and describe()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mockserver import spec
from mockserver.request import MockRequest
from mockserver.validation import Violation, describe, iter_violations

SPECS = Path(__file__).parent / "specs"
AUTH = {"authorization": "Bearer good-key"}


@pytest.fixture(scope="module")
def tiny() -> spec.Spec:
    return spec.load(SPECS / "tiny_status.yaml")


def _request(body: Any = None, *, headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
             path_params: dict[str, str] | None = None, raw: bytes | None = None) -> MockRequest:
    if raw is None:
        raw = b"" if body is None else json.dumps(body).encode()
    return MockRequest("POST", "/v1/clips", AUTH if headers is None else headers, query or {}, raw,
                       path_params=path_params or {})


def _only(violations: list[Violation]) -> Violation:
    assert len(violations) == 1, violations
    return violations[0]


# -- security ---------------------------------------------------------------------------------------


def test_missing_authorization_header(tiny: spec.Spec) -> None:
    """Reports a missing Authorization header alone, even when the body is invalid too."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request({"clip_id": 5, "kind": "x"}, headers={})))
    assert (v.kind, v.pointer, v.message) == ("security", "/header/Authorization", "Authorization header is missing.")
    assert v.expected == "Bearer <api key>"


def test_blank_authorization_header_counts_as_missing(tiny: spec.Spec) -> None:
    """Treats a whitespace-only Authorization header as missing."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request({"clip_id": "a"}, headers={"authorization": "  "})))
    assert v.message == "Authorization header is missing."


@pytest.mark.parametrize("header", ["Basic x", "Bearer", "Bearer two words", "good-key"])
def test_malformed_authorization_header(tiny: spec.Spec, header: str) -> None:
    """Reports a header that is not `Bearer <key>` as an invalid format."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request({}, headers={"authorization": header})))
    assert (v.kind, v.message) == ("security", "Invalid authorization format.")
    assert v.received == json.dumps(header)


def test_bearer_scheme_is_case_insensitive(tiny: spec.Spec) -> None:
    """Accepts `bearer` in lower case."""
    assert iter_violations(tiny.by_id["createClip"], _request({"clip_id": "a"},
                                                              headers={"authorization": "bearer k"})) == []


def test_unknown_key_when_keys_are_configured(tiny: spec.Spec) -> None:
    """Rejects a key not in known_keys, showing only its first four characters."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request({"clip_id": "a"}), known_keys={"other-key"}))
    assert (v.kind, v.message, v.expected) == ("security", "The API key is not valid.", "a configured API key")
    assert v.received == "good…"


def test_known_key_passes(tiny: spec.Spec) -> None:
    """Accepts a key listed in known_keys, and any key when known_keys is None."""
    op = tiny.by_id["createClip"]
    assert iter_violations(op, _request({"clip_id": "a"}), known_keys={"good-key"}) == []
    assert iter_violations(op, _request({"clip_id": "a"}), known_keys=None) == []


def test_unsecured_operation_needs_no_header(tiny: spec.Spec) -> None:
    """Skips the security check for an operation with `security: []`."""
    assert iter_violations(tiny.by_id["health"], _request(headers={}), known_keys={"x"}) == []


# -- parameters -------------------------------------------------------------------------------------


def test_required_query_param_missing(tiny: spec.Spec) -> None:
    """Reports a missing required query parameter with its location and schema."""
    v = _only(iter_violations(tiny.by_id["search"], _request(query={})))
    assert (v.kind, v.pointer) == ("parameter", "/query/q")
    assert v.message == "q is required (query parameter)."
    assert v.expected == "a string"
    assert v.field == "q"


def test_optional_query_param_may_be_absent(tiny: spec.Spec) -> None:
    """Accepts a request that omits an optional query parameter."""
    assert iter_violations(tiny.by_id["search"], _request(query={"q": "x"})) == []


def test_query_integer_is_coerced(tiny: spec.Spec) -> None:
    """Reads an integer query value from its text before validating it."""
    assert iter_violations(tiny.by_id["search"], _request(query={"q": "x", "limit": "50"})) == []
    v = _only(iter_violations(tiny.by_id["search"], _request(query={"q": "x", "limit": "0"})))
    assert v.pointer == "/query/limit"
    assert v.received == 0  # coerced: the integer, not the text "0"
    assert v.message.startswith("limit: ")
    assert v.expected == "an integer >= 1 <= 50"


def test_query_integer_that_does_not_parse(tiny: spec.Spec) -> None:
    """Reports a non-numeric value for an integer query parameter as a type error on the text."""
    v = _only(iter_violations(tiny.by_id["search"], _request(query={"q": "x", "limit": "ten"})))
    assert v.pointer == "/query/limit" and v.received == "ten"
    assert "limit" in v.message and "integer" in v.message


def test_query_boolean_is_coerced(tiny: spec.Spec) -> None:
    """Reads `true`/`false` as booleans and rejects other text for a boolean parameter."""
    op = tiny.by_id["getClip"]
    assert iter_violations(op, _request(query={"verbose": "true"}, path_params={"clip_id": "c"})) == []
    assert iter_violations(op, _request(query={"verbose": "false"}, path_params={"clip_id": "c"})) == []
    v = _only(iter_violations(op, _request(query={"verbose": "yes"}, path_params={"clip_id": "c"})))
    assert v.pointer == "/query/verbose" and v.received == "yes"


def test_empty_path_param_is_missing(tiny: spec.Spec) -> None:
    """Reports an empty path parameter as required."""
    v = _only(iter_violations(tiny.by_id["getClip"], _request(path_params={"clip_id": ""})))
    assert (v.pointer, v.message) == ("/path/clip_id", "clip_id is required (path parameter).")


def test_header_param_is_looked_up_case_insensitively(tiny: spec.Spec) -> None:
    """Reads a header parameter from the lower-cased headers and validates it."""
    op = tiny.by_id["search"]
    assert iter_violations(op, _request(query={"q": "x"}, headers={**AUTH, "x-trace": "abc123"})) == []
    v = _only(iter_violations(op, _request(query={"q": "x"}, headers={**AUTH, "x-trace": "XYZ"})))
    assert v.pointer == "/header/X-Trace"
    assert v.expected == "a string matching ^[a-f0-9]+$"


# -- body -------------------------------------------------------------------------------------------


def test_body_missing_when_required(tiny: spec.Spec) -> None:
    """Reports an absent body when the operation requires one."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request(raw=b"  ")))
    assert (v.kind, v.pointer, v.message, v.expected) == ("body", "/body", "The request body is required.",
                                                          "a JSON object")


def test_invalid_json_body(tiny: spec.Spec) -> None:
    """Reports a body that is not JSON, with the parser's reason."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request(raw=b'{"clip_id": ')))
    assert v.kind == "body" and v.pointer == "/body"
    assert v.message.startswith("The request body is not valid JSON (")
    assert v.expected == "a JSON object"


def test_valid_body_has_no_violations(tiny: spec.Spec) -> None:
    """Accepts a body that matches the schema."""
    body = {"clip_id": "a", "kind": "drums", "url": "https://example.com/a.mp3", "volume": 0.5, "count": 2,
            "meta": {"tags": ["x"]}}
    assert iter_violations(tiny.by_id["createClip"], _request(body)) == []


@pytest.mark.parametrize(
    ("field", "value", "expected", "fragment"),
    [
        ("clip_id", 5, "a string of at least 1 characters", "string"),
        ("kind", "bass", 'one of "vocals", "drums"', "bass"),
        ("url", "not a uri", "a uri string", "uri"),
        ("volume", -1, "a number >= 0", "minimum"),
        ("count", 1.5, "an integer", "integer"),
    ],
)
def test_schema_errors_name_the_field(tiny: spec.Spec, field: str, value: Any, expected: str, fragment: str) -> None:
    """Reports a type/enum/format/minimum error at /body/<field>, naming the field and the expectation."""
    body = {"clip_id": "a", field: value}
    v = _only(iter_violations(tiny.by_id["createClip"], _request(body)))
    assert (v.kind, v.pointer) == ("body", f"/body/{field}")
    assert v.message.startswith(f"{field}: ")
    assert fragment in v.message
    assert v.expected == expected
    assert v.received == value
    assert v.field == field


def test_missing_required_body_field(tiny: spec.Spec) -> None:
    """Reports a missing required property at its own pointer with the property's schema."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request({"kind": "drums"})))
    assert (v.pointer, v.message, v.expected) == ("/body/clip_id", "clip_id is required.",
                                                  "a string of at least 1 characters")


def test_additional_property(tiny: spec.Spec) -> None:
    """Reports a property the schema does not allow."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request({"clip_id": "a", "colour": "red"})))
    assert (v.pointer, v.message, v.expected) == ("/body/colour", "colour is not allowed here.", "no such property")


def test_nested_error_pointer_and_field(tiny: spec.Spec) -> None:
    """Points into nested objects and arrays, and names the field with dots."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request({"clip_id": "a", "meta": {"tags": ["x", 3]}})))
    assert v.pointer == "/body/meta/tags/1"
    assert v.field == "meta.tags.1"
    assert v.message.startswith("meta.tags.1: ")
    assert v.expected == "a string"


def test_several_errors_are_all_reported(tiny: spec.Spec) -> None:
    """Reports every body error, not only the first."""
    found = iter_violations(tiny.by_id["createClip"], _request({"clip_id": 1, "volume": -2}))
    assert sorted(v.pointer for v in found) == ["/body/clip_id", "/body/volume"]


def test_non_object_body(tiny: spec.Spec) -> None:
    """Calls a top-level type error a problem of 'the body'."""
    v = _only(iter_violations(tiny.by_id["createClip"], _request([1, 2])))
    assert v.pointer == "/body"
    assert v.message.startswith("the body: ")
    assert v.expected.startswith("an object")


def test_violation_as_dict_carries_the_field() -> None:
    """Adds the user-facing field name to the violation's dict."""
    v = Violation("body", "/body/data/0/id", "data.0.id is required.", "a string")
    assert v.as_dict() == {"kind": "body", "pointer": "/body/data/0/id", "message": "data.0.id is required.",
                           "expected": "a string", "received": None, "field": "data.0.id"}
    assert Violation("body", "/body", "x").field == "body"
    assert Violation("security", "/header/Authorization", "x").field == "Authorization"


# -- the range rule ---------------------------------------------------------------------------------


def _range(tiny: spec.Spec, **bounds: Any) -> list[Violation]:
    return iter_violations(tiny.by_id["createClip"], _request({"clip_id": "a", **bounds}))


@pytest.mark.parametrize(
    "bounds",
    [{}, {"start_s": 0, "end_s": 30}, {"start_s": 12.0, "end_s": 40.0}, {"start_s": 0.25, "end_s": 30.25},
     {"start_s": 10, "end_s": 10.5}],
)
def test_range_rule_accepts(tiny: spec.Spec, bounds: dict[str, Any]) -> None:
    """Accepts no bounds, or both with end > start and a span of at most 30 s (floats too, 30 exactly)."""
    assert _range(tiny, **bounds) == []


def test_range_rule_needs_both_bounds(tiny: spec.Spec) -> None:
    """Reports the missing bound when only one of the pair is sent."""
    v = _only(_range(tiny, start_s=1))
    assert (v.kind, v.pointer, v.expected) == ("rule", "/body/end_s", "both bounds or neither")
    assert v.message == "end_s is required when start_s is given: send both bounds or neither."
    v = _only(_range(tiny, end_s=1))
    assert v.pointer == "/body/start_s"
    assert v.message == "start_s is required when end_s is given: send both bounds or neither."


@pytest.mark.parametrize(("start", "end"), [(10, 10), (10, 5), (2.5, 2.5)])
def test_range_rule_needs_end_after_start(tiny: spec.Spec, start: float, end: float) -> None:
    """Reports an end that is not greater than the start."""
    v = _only(_range(tiny, start_s=start, end_s=end))
    assert (v.kind, v.pointer, v.expected, v.received) == ("rule", "/body/end_s", "end_s > start_s", end)
    assert v.message == f"end_s ({end}) must be greater than start_s ({start})."


def test_range_rule_limits_the_span(tiny: spec.Spec) -> None:
    """Reports a span longer than max_span, with the span received."""
    v = _only(_range(tiny, start_s=0, end_s=30.5))
    assert (v.kind, v.pointer, v.expected, v.received) == ("rule", "/body/end_s", "end_s - start_s <= 30", 30.5)
    assert v.message == "The range start_s..end_s is 30.5 s long; at most 30 s is allowed."


def test_range_rule_waits_for_a_valid_body(tiny: spec.Spec) -> None:
    """Leaves a non-numeric bound to the schema and skips the rule."""
    v = _only(_range(tiny, start_s="a", end_s=100))
    assert (v.kind, v.pointer) == ("body", "/body/start_s")


def test_range_rule_on_the_bundled_vox_operation() -> None:
    """Applies the 30 s range rule declared by the bundled MusicAPI getVox operation."""
    op = spec.load(spec.spec_path("musicapi")).by_id["getVox"]
    clip = "26c9c592-0566-46cf-bb71-91ac1deaa7b5"
    assert iter_violations(op, _request({"clip_id": clip, "vocal_start_s": 12.0, "vocal_end_s": 42.0})) == []
    v = _only(iter_violations(op, _request({"clip_id": clip, "vocal_start_s": 12.0, "vocal_end_s": 42.5})))
    assert (v.kind, v.pointer) == ("rule", "/body/vocal_end_s")


# -- describe() -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "phrase"),
    [
        ({"type": "number", "minimum": 0}, "a number >= 0"),
        ({"type": "integer", "exclusiveMinimum": 0, "maximum": 10}, "an integer > 0 <= 10"),
        ({"type": "number", "exclusiveMaximum": 1.5}, "a number < 1.5"),
        ({"enum": ["a", "b"]}, 'one of "a", "b"'),
        ({"enum": [1, None]}, "one of 1, null"),
        ({"const": 200}, "exactly 200"),
        ({"type": "string"}, "a string"),
        ({"type": "string", "format": "uuid"}, "a uuid string"),
        ({"type": "string", "minLength": 1, "maxLength": 80},
         "a string of at least 1 characters and at most 80 characters"),
        ({"type": "string", "pattern": "^[a-z]+$"}, "a string matching ^[a-z]+$"),
        ({"type": ["string", "null"]}, "a string or null"),
        ({"type": "boolean"}, "a boolean"),
        ({"type": "object"}, "an object"),
        ({"type": "array"}, "an array"),
        ({}, "a value"),
        ("not a schema", "a valid value"),
    ],
)
def test_describe(schema: Any, phrase: str) -> None:
    """Phrases what a schema accepts in a few words."""
    assert describe(schema) == phrase


def test_describe_shortens_long_enum_values() -> None:
    """Cuts an enum value longer than 60 characters with an ellipsis."""
    phrase = describe({"enum": ["x" * 100]})
    assert phrase.startswith('one of "xxx') and phrase.endswith("...")
    assert len(phrase) == len("one of ") + 60


def test_range_rule_accepts_a_decimal_span_of_exactly_30_s(tiny: spec.Spec) -> None:
    """Accepts 2.2..32.2, a 30 s window whose binary float difference is 30.000000000000004."""
    assert _range(tiny, start_s=2.2, end_s=32.2) == []
