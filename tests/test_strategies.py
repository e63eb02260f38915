"""contracts.strategies and .schemas: what they generate keeps (or, when asked, breaks) the specs it is derived from."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from contracts.schemas import from_schema
from contracts.strategies import (
    Behaviour,
    RequestCase,
    behaviours,
    callback_kinds,
    callbacks,
    error_outcomes,
    requests,
    responses,
)
from mockserver.scenarios import SCENARIOS, WIRE_FAULTS, _too_long
from mockserver.spec import Operation, compile_schema, load, spec_path
from mockserver.validation import iter_violations

SPECS = {name: load(spec_path(name)) for name in ("musicapi", "apibox")}
OPERATIONS = [(name, op.operation_id) for name, spec in SPECS.items() for op in spec.operations]
WITH_CALLBACKS = [(name, op_id) for name, op_id in OPERATIONS if SPECS[name].by_id[op_id].callbacks]
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Existence checks need a hit, not the smallest hit: no shrinking, which would dominate the run time.
FIND = settings(max_examples=500, deadline=None, database=None, phases=[Phase.generate])


def op_of(provider: str, operation_id: str) -> Operation:
    return SPECS[provider].by_id[operation_id]


def sample(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """Up to `count` generated values (fewer when the strategy has fewer), unshrunk."""
    found: list[Any] = []

    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate])
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found


def reaches(strategy: st.SearchStrategy[Any], wanted: Any) -> None:
    """Fail unless `strategy` generates `wanted` (compared with ==) within FIND's budget."""
    find(strategy, lambda value: bool(value == wanted), settings=FIND)


def both_modes(make: Any, *args: Any) -> st.SearchStrategy[Any]:
    return st.one_of(make(*args), make(*args, adversarial=True))


@pytest.mark.parametrize(("provider", "operation_id"), OPERATIONS)
@FEW
@given(data=st.data())
def test_valid_requests_pass_validation(provider: str, operation_id: str, data: st.DataObject) -> None:
    """Every valid request, ordinary or adversarial, passes the mock's validation, x-mock rules included."""
    case = data.draw(both_modes(requests, provider, operation_id))
    op = op_of(provider, operation_id)
    assert case.method == op.method and case.violation is None
    assert iter_violations(op, case.as_mock_request()) == []
    assert _too_long(op, case.as_mock_request()) is None  # x-mock.limits are kept too: no 413


@pytest.mark.parametrize(("provider", "operation_id"), OPERATIONS)
@FEW
@given(data=st.data())
def test_invalid_requests_break_exactly_their_target(provider: str, operation_id: str, data: st.DataObject) -> None:
    """Every invalid request is rejected, and only for the one field it was built to break."""
    case = data.draw(st.one_of(requests(provider, operation_id, valid=False),
                               requests(provider, operation_id, valid=False, adversarial=True)))
    violations = iter_violations(op_of(provider, operation_id), case.as_mock_request())
    assert violations, case
    assert case.target is not None
    assert all(v.pointer.startswith(case.target) for v in violations), (case, violations)


@pytest.mark.parametrize(("provider", "operation_id", "kind"), [
    ("musicapi", "getVox", "missing"), ("musicapi", "getVox", "wrong_type"), ("musicapi", "getVox", "out_of_range"),
    ("musicapi", "uploadMusic", "bad_format"), ("musicapi", "getVox", "rule"), ("musicapi", "getVox", "no_body"),
    ("musicapi", "getVox", "security"), ("musicapi", "createMusic", "bad_enum"),
    ("musicapi", "getTask", "out_of_range"), ("apibox", "getVocalSeparationDetails", "out_of_range"),
])
def test_every_violation_kind_is_reachable(provider: str, operation_id: str, kind: str) -> None:
    """Each way of breaking the spec that applies to an operation is generated."""
    case = find(requests(provider, operation_id, valid=False), lambda c: c.violation == kind, settings=FIND)
    assert iter_violations(op_of(provider, operation_id), case.as_mock_request())


def test_request_cases_fill_path_parameters() -> None:
    """A path parameter is filled into the path and kept raw in path_params."""
    case: RequestCase = find(requests("musicapi", "getTask"), lambda c: True, settings=FIND)
    assert case.path == f"/api/v1/sonic/task/{case.path_params['task_id']}"
    assert case.body is None and "Content-Type" not in case.headers


@pytest.mark.parametrize(("provider", "operation_id"), OPERATIONS)
@FEW
@given(data=st.data())
def test_response_bodies_match_their_status_schema(provider: str, operation_id: str, data: st.DataObject) -> None:
    """Every response, ordinary or adversarial, validates against the schema of its status."""
    response = data.draw(both_modes(responses, provider, operation_id))
    doc = op_of(provider, operation_id).responses[response.status]
    assert doc.validator is not None and doc.validator.is_valid(response.body), response
    assert set(doc.headers) <= set(response.headers)


@FEW
@given(data=st.data())
def test_apibox_code_keyword_selects_the_body_code(data: st.DataObject) -> None:
    """api.box outcomes come as HTTP 200 with the chosen body code, and errors carry data null as documented."""
    code = data.draw(error_outcomes("apibox", "separateVocals"))
    response = data.draw(responses("apibox", "separateVocals", code=code, adversarial=data.draw(st.booleans())))
    assert (response.status, response.code, response.body["code"]) == (200, code, code)
    assert response.body.get("data") is None


@FEW
@given(data=st.data())
def test_musicapi_status_keyword_selects_the_http_status(data: st.DataObject) -> None:
    """MusicAPI outcomes are HTTP statuses, the body code repeats it and 429 carries Retry-After."""
    status = data.draw(error_outcomes("musicapi", "getVox"))
    response = data.draw(responses("musicapi", "getVox", status))
    assert response.status == response.code == status and response.body.get("code", status) == status
    if status == 429:
        assert int(response.headers["Retry-After"]) >= 0


def test_response_outcomes_outside_the_spec_are_refused() -> None:
    """Asking for an undocumented outcome, or an HTTP status api.box never sends, is an error."""
    with pytest.raises(ValueError, match="code="):
        responses("apibox", "separateVocals", 430)
    with pytest.raises(ValueError, match="documents no outcome"):
        responses("musicapi", "getVox", 418)
    with pytest.raises(ValueError, match="no operation"):
        requests("musicapi", "noSuchOperation")


@pytest.mark.parametrize(("provider", "operation_id"), WITH_CALLBACKS)
@FEW
@given(data=st.data())
def test_callback_payloads_match_the_callback_schema(provider: str, operation_id: str, data: st.DataObject) -> None:
    """Every callback payload, of every kind, validates against its callback schema."""
    kind = data.draw(st.sampled_from(callback_kinds(provider, operation_id)))
    payload = data.draw(callbacks(provider, operation_id, kind, adversarial=data.draw(st.booleans())))
    assert any(cb.validator.is_valid(payload) for cb in op_of(provider, operation_id).callbacks.values())


@pytest.mark.parametrize("index", [0, 1, 2])
@FEW
@given(data=st.data())
def test_vocal_removal_kinds_are_the_oneof_branches(index: int, data: st.DataObject) -> None:
    """separateVocals callback kinds name the oneOf branches, in order, and each kind matches only its branch."""
    kinds = callback_kinds("apibox", "separateVocals")
    assert kinds == ("separate_vocal", "split_stem", "failure")
    branches = op_of("apibox", "separateVocals").callbacks["vocalRemovalResult"].schema["oneOf"]
    payload = data.draw(callbacks("apibox", "separateVocals", kinds[index]))
    assert [compile_schema(b).is_valid(payload) for b in branches] == [i == index for i in range(len(branches))]


def test_callback_kind_may_name_a_value_the_payload_holds() -> None:
    """A kind that is an enum or const value (a stage, an event) pins that value in the payload."""
    assert callback_kinds("apibox", "generateMusic") == ("stage", "failure")
    assert callback_kinds("musicapi", "createMusic") == ("song_completed", "song_streaming", "song_failed")
    complete = find(callbacks("apibox", "generateMusic", "complete"), lambda p: True, settings=FIND)
    assert complete["data"]["callbackType"] == "complete"
    failed = find(callbacks("musicapi", "createMusic", "song.failed"), lambda p: True, settings=FIND)
    assert failed["event"] == "song.failed"
    with pytest.raises(ValueError, match="no callback kind"):
        callbacks("apibox", "separateVocals", "no_such_kind")


@pytest.mark.parametrize(("provider", "operation_id"), [("apibox", "separateVocals"), ("musicapi", "getTask")])
@FEW
@given(data=st.data())
def test_error_outcomes_are_documented_failures(provider: str, operation_id: str, data: st.DataObject) -> None:
    """error_outcomes draws only documented codes, and never a success."""
    code = data.draw(error_outcomes(provider, operation_id))
    op = op_of(provider, operation_id)
    assert code in op.documented_codes
    assert code != 200 if op.provider.body_transport else not 200 <= code < 300


def test_behaviours_shrink_to_normal_and_reach_every_kind() -> None:
    """Behaviours shrink to a normal call, and reach documented codes, every wire fault and every scenario."""
    shrinking = settings(FIND, phases=[Phase.generate, Phase.shrink])
    assert find(behaviours(), lambda b: True, settings=shrinking) == Behaviour("normal")
    documented = {c for op in SPECS["apibox"].operations for c in op.documented_codes}
    assert {b.value for b in sample(behaviours("apibox"), 100) if b.kind == "code"} <= documented
    for wanted in [*(Behaviour("code", c) for c in (429, 430, 455)), *(Behaviour("wire_fault", f) for f in WIRE_FAULTS),
                   *(Behaviour("scenario", s) for s in SCENARIOS)]:
        reaches(behaviours("apibox"), wanted)


@FEW
@given(behaviours("apibox", "getRemainingCredits"))
def test_operation_behaviours_fit_the_operation(behaviour: Behaviour) -> None:
    """An operation's behaviours use its own documented codes and no callback scenario when it has no callbacks."""
    op = op_of("apibox", "getRemainingCredits")
    assert behaviour.kind in ("normal", "code", "wire_fault")
    if behaviour.kind == "code":
        assert behaviour.value in op.documented_codes and behaviour.value != 200


def test_behaviour_as_fault_and_prefer() -> None:
    """A behaviour renders as a /__mock/faults body and, where one exists, a Prefer header value."""
    assert Behaviour("code", 430).fault("POST /api/v1/generate", times=2) == {
        "operation": "POST /api/v1/generate", "code": 430, "times": 2}
    assert Behaviour("code", 430).prefer() == "code=430"
    assert Behaviour("scenario", "callback_late").prefer() == "scenario=callback_late"
    assert Behaviour("wire_fault", "empty_200").prefer() is None
    assert Behaviour("normal").fault("getVox") is None


def test_adversarial_requests_drop_optionals_and_add_unknown_keys() -> None:
    """Adversarial requests omit optional fields and add keys the schema does not name, where it allows them."""
    op = op_of("apibox", "separateVocals")
    names = set((op.body_schema or {})["properties"])
    adversarial = requests("apibox", "separateVocals", adversarial=True)
    find(adversarial, lambda c: "type" not in c.body, settings=FIND)
    case = find(adversarial, lambda c: bool(set(c.body) - names), settings=FIND)
    assert iter_violations(op, case.as_mock_request()) == []


def test_adversarial_payloads_carry_nulls_and_boundary_lengths() -> None:
    """Adversarial payloads set nullable fields to null and strings to exactly their length bounds."""
    tracks = callbacks("apibox", "generateMusic", "complete", adversarial=True)
    find(tracks, lambda p: any(v is None for t in p["data"]["data"] for v in t.values()), settings=FIND)
    title = find(requests("musicapi", "createMusic", adversarial=True),
                 lambda c: len(c.body.get("title", "")) == 80, settings=FIND)
    assert iter_violations(op_of("musicapi", "createMusic"), title.as_mock_request()) == []


SEPARATION_TYPES = (op_of("apibox", "separateVocals").body_schema or {})["properties"]["type"]["enum"]


@pytest.mark.parametrize("value", [*SEPARATION_TYPES, None])
def test_every_separation_type_appears(value: str | None) -> None:
    """Every value of the separateVocals `type` enum is generated, and so is its absence."""
    reaches(requests("apibox", "separateVocals").map(lambda case: (case.body or {}).get("type")), value)


SCHEMAS: list[dict[str, Any]] = [
    {"type": ["string", "null"], "minLength": 2, "maxLength": 5},
    {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "uri", "maxLength": 64},
    {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
    {"type": "integer", "not": {"const": 200}},
    {"type": "object", "required": ["a"], "properties": {"a": {"type": "boolean"}, "b": {"type": "string"}},
     "allOf": [{"if": {"properties": {"a": {"const": True}}}, "then": {"required": ["b"]}}],
     "additionalProperties": False},
    {"type": "object", "properties": {"s": {"type": "number"}, "e": {"type": "number"}},
     "dependentRequired": {"s": ["e"], "e": ["s"]}},
    {"oneOf": [{"type": "object", "required": ["k"], "properties": {"k": {"const": "x"}}}, {"type": "null"}]},
    {"allOf": [{"type": "object", "required": ["e"], "properties": {"e": {"enum": ["a", "b"]}}},
               {"properties": {"e": {"const": "b"}}}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
@FEW
@given(data=st.data())
def test_from_schema_values_are_valid(schema: dict[str, Any], data: st.DataObject) -> None:
    """from_schema's values, ordinary and adversarial, pass the compiled validator for each keyword it supports."""
    assert compile_schema(schema).is_valid(data.draw(both_modes(from_schema, schema)))


def test_from_schema_adversarial_hits_the_bounds() -> None:
    """Adversarial generation reaches null, both length bounds and both numeric bounds."""
    lengths = from_schema(SCHEMAS[0], adversarial=True).map(lambda v: None if v is None else len(v))
    for wanted in (None, 2, 5):
        reaches(lengths, wanted)
    for bound in (0, 1):
        reaches(from_schema(SCHEMAS[1], adversarial=True), bound)
    assert find(from_schema(SCHEMAS[-1]), lambda v: True, settings=FIND) == {"e": "b"}
