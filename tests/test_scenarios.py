"""Unit tests for mockserver.scenarios.decide(): which outcome a request gets, and why."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mockserver import spec
from mockserver.request import MockRequest
from mockserver.scenarios import Outcome, Refusal, cost_key, decide
from mockserver.validation import iter_violations

SPECS = Path(__file__).parent / "specs"
RICH = {"credits": 1000.0, "extra_credits": 0.0}
CLIP = {"clip_id": "abc"}
SPLIT = {"taskId": "t1", "callBackUrl": "https://example.com/cb"}


@dataclass
class FakeView:
    """A read-only view of the mock's state for one request; it records what decide() read."""

    costs: dict[str, float]
    refusal: Refusal | None = None
    account: dict[str, float] = field(default_factory=lambda: dict(RICH))
    maintenance: bool = False
    wait: float | None = None
    reads: list[str] = field(default_factory=list)

    def precheck(self) -> Refusal | None:
        self.reads.append("precheck")
        return self.refusal

    def balance(self) -> dict[str, float]:
        self.reads.append("balance")
        return dict(self.account)

    def in_maintenance(self) -> bool:
        self.reads.append("maintenance")
        return self.maintenance

    def retry_after(self) -> float | None:
        self.reads.append("retry_after")
        return self.wait

    def scripted_fault(self) -> dict[str, Any] | None:
        return None

    def seeded_rules(self) -> Sequence[Any]:
        return ()

    def script_step(self) -> dict[str, Any] | None:
        return None


@pytest.fixture(scope="module")
def status_spec() -> spec.Spec:
    return spec.load(SPECS / "tiny_status.yaml")


@pytest.fixture(scope="module")
def body_spec() -> spec.Spec:
    return spec.load(SPECS / "tiny_body.yaml")


def _request(body: Any = None, *, prefer: str | None = None, auth: bool = True) -> MockRequest:
    headers = {"authorization": "Bearer k"} if auth else {}
    if prefer is not None:
        headers["prefer"] = prefer
    raw = b"" if body is None else json.dumps(body).encode()
    return MockRequest("POST", "/", headers, {}, raw)


def _run(op: spec.Operation, req: MockRequest, view: FakeView | None = None, **view_fields: Any) -> Outcome:
    if view is None:
        view = FakeView(costs=dict(op.provider.costs), **view_fields)
    return decide(op, req, iter_violations(op, req), view, random.Random(0))


# -- validation -------------------------------------------------------------------------------------


def test_violations_are_rejected_with_400(status_spec: spec.Spec) -> None:
    """Rejects an invalid request with 400, listing each violation with what was expected."""
    view = FakeView(costs={"clip": 5})
    out = _run(status_spec.by_id["createClip"], _request({"clip_id": 5, "volume": -1}), view)
    assert (out.kind, out.code) == ("rejected", 400)
    assert out.reason == "validation: 2 violation(s)"
    assert out.message is not None
    assert "clip_id: 5 is not of type" in out.message and "(expected a string of at least 1 characters)" in out.message
    assert "(expected a number >= 0)" in out.message
    assert out.message.endswith(".") and "; " in out.message
    assert view.reads == []


def test_validation_beats_a_directive(status_spec: spec.Spec) -> None:
    """Rejects an invalid request even when Prefer asks for a documented outcome."""
    out = _run(status_spec.by_id["createClip"], _request({}, prefer="code=403"))
    assert (out.kind, out.code) == ("rejected", 400)


def test_validation_code_comes_from_x_mock(status_spec: spec.Spec) -> None:
    """Uses x-mock.validation_code instead of 400 when the operation declares one."""
    op = status_spec.by_id["createClip"]
    op = dataclasses.replace(op, x_mock={**op.x_mock, "validation_code": 422})
    assert _run(op, _request({})).code == 422


def test_security_violation_is_rejected_with_401(status_spec: spec.Spec) -> None:
    """Rejects a missing Authorization header with 401 and the violation's own words (status transport)."""
    view = FakeView(costs={"clip": 5})
    out = _run(status_spec.by_id["createClip"], _request(CLIP, auth=False), view)
    assert (out.kind, out.code, out.message) == ("rejected", 401, "Authorization header is missing.")
    assert out.reason == "security: Authorization header is missing."
    assert view.reads == []


def test_security_violation_on_body_transport_uses_the_provider_401_message(body_spec: spec.Spec) -> None:
    """Prefixes the provider's 401 message on a body-transport provider."""
    out = _run(body_spec.by_id["split"], _request(SPLIT, auth=False))
    assert (out.kind, out.code) == ("rejected", 401)
    assert out.message == "You do not have access permissions: Authorization header is missing."


def test_missing_field_error_when_it_is_the_only_violation(body_spec: spec.Spec) -> None:
    """Answers a lone missing callBackUrl with the provider's own code and message."""
    out = _run(body_spec.by_id["split"], _request({"taskId": "t1"}))
    assert (out.kind, out.code, out.message) == ("rejected", 422, "Please enter callBackUrl.")


def test_missing_field_error_not_used_with_other_violations(body_spec: spec.Spec) -> None:
    """Falls back to the generic 400 when the missing field is one of several violations."""
    out = _run(body_spec.by_id["split"], _request({"type": "split_stem"}))
    assert (out.kind, out.code) == ("rejected", 400)
    assert out.message is not None and "taskId is required" in out.message and "callBackUrl is required" in out.message


def test_missing_field_error_not_used_for_a_wrong_type(body_spec: spec.Spec) -> None:
    """Falls back to the generic 400 when the special field is present but invalid."""
    out = _run(body_spec.by_id["split"], _request({"taskId": "t1", "callBackUrl": 7}))
    assert (out.kind, out.code) == ("rejected", 400)


# -- Prefer: code / example -------------------------------------------------------------------------


def test_prefer_documented_code_uses_the_example_message(status_spec: spec.Spec) -> None:
    """Forces a documented error code, worded by the example that documents it."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="code=403"))
    assert (out.kind, out.code, out.message) == ("error", 403, "Example says no credits.")
    assert out.reason == "Prefer: code=403"


def test_prefer_documented_code_without_example_uses_the_provider_message(status_spec: spec.Spec) -> None:
    """Forces a documented error code without an example, worded by the provider's default."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="code=404"))
    assert (out.kind, out.code, out.message) == ("error", 404, "Nothing here.")


def test_prefer_documented_body_code(body_spec: spec.Spec) -> None:
    """Forces a body code on a body-transport provider with the example's `msg`, else the provider's."""
    op = body_spec.by_id["split"]
    out = _run(op, _request(SPLIT, prefer="code=430"))
    assert (out.kind, out.code, out.reason, out.message) == ("error", 430, "Prefer: code=430", "Slow down, example.")
    out = _run(op, _request(SPLIT, prefer="code=429"))
    assert (out.kind, out.code, out.message) == ("error", 429, "The current credits are insufficient.")


def test_prefer_undocumented_code_is_refused(status_spec: spec.Spec, body_spec: spec.Spec) -> None:
    """Refuses an undocumented code with 400 and lists the documented ones."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="code=418"))
    assert (out.kind, out.code, out.reason) == ("rejected", 400, "directive refused")
    assert out.message == ("Prefer: code=418 is not a documented outcome of POST /v1/clips; "
                           "documented codes: 200, 400, 401, 403, 404.")
    out = _run(body_spec.by_id["split"], _request(SPLIT, prefer="code=503"))
    assert out.kind == "rejected" and out.message is not None
    assert out.message.endswith("documented codes: 200, 400, 401, 422, 429, 430.")


def test_prefer_non_numeric_code_is_refused(status_spec: spec.Spec) -> None:
    """Refuses a code that is not a number."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="code=teapot"))
    assert (out.kind, out.code) == ("rejected", 400)
    assert out.message is not None and out.message.startswith("Prefer: code=teapot is not a documented outcome")


def test_prefer_success_code_takes_the_success_path(status_spec: spec.Spec) -> None:
    """Treats Prefer: code=200 as the ordinary success, still charging its cost."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="code=200"))
    assert (out.kind, out.code, out.reason, out.cost) == ("success", 200, "Prefer: code=200", 5.0)


def test_prefer_other_2xx_code_answers_with_its_example(status_spec: spec.Spec) -> None:
    """Answers a documented non-success 2xx code with the example that documents it."""
    op = status_spec.by_id["getClip"]
    req = MockRequest("GET", "/v1/clips/c", {"authorization": "Bearer k", "prefer": "code=202"}, {}, b"",
                      path_params={"clip_id": "c"})
    out = _run(op, req)
    assert (out.kind, out.code, out.example) == ("example", 202, "not_ready")


def test_prefer_example_by_name(status_spec: spec.Spec, body_spec: spec.Spec) -> None:
    """Answers with a named example, coded by its status or, on body transport, its body code."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="example=no_credits"))
    assert (out.kind, out.code, out.example, out.reason) == ("example", 403, "no_credits", "Prefer: example=no_credits")
    out = _run(body_spec.by_id["split"], _request(SPLIT, prefer='example="too_fast"'))
    assert (out.kind, out.code, out.example) == ("example", 430, "too_fast")


def test_prefer_unknown_example_is_refused(status_spec: spec.Spec) -> None:
    """Refuses an unknown example name and lists the documented names."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="example=nope"))
    assert (out.kind, out.code, out.reason) == ("rejected", 400, "directive refused")
    assert out.message == ("Prefer: example=nope names no example of POST /v1/clips; "
                           "documented examples: created, no_credits.")


def test_prefer_example_on_an_operation_without_examples(status_spec: spec.Spec) -> None:
    """Says 'none' when the operation documents no examples."""
    out = _run(status_spec.by_id["health"], _request(prefer="example=x"))
    assert out.message is not None and out.message.endswith("documented examples: none.")


def test_directive_beats_precheck_and_credits(status_spec: spec.Spec) -> None:
    """Applies a Prefer directive without consulting the preconditions or the balance."""
    view = FakeView(costs={"clip": 5}, refusal=Refusal(500, "no", "precheck"), account={"credits": 0,
                                                                                         "extra_credits": 0})
    out = _run(status_spec.by_id["createClip"], _request(CLIP, prefer="code=404"), view)
    assert out.code == 404
    assert "precheck" not in view.reads and "balance" not in view.reads


# -- preconditions and credits ----------------------------------------------------------------------


def test_precheck_refusal(status_spec: spec.Spec) -> None:
    """Answers a failed precondition with its code, message and reason, before looking at credits."""
    view = FakeView(costs={"clip": 5}, refusal=Refusal(404, "task not found.", "precheck: unknown clip"))
    out = _run(status_spec.by_id["createClip"], _request(CLIP), view)
    assert (out.kind, out.code, out.reason, out.message) == ("error", 404, "precheck: unknown clip", "task not found.")
    assert out.cost == 0
    assert "balance" not in view.reads


def test_credits_short_on_status_transport(status_spec: spec.Spec) -> None:
    """Refuses a call costing more than credits + extra credits with 403 and the provider's message."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP), account={"credits": 2.0, "extra_credits": 2.5})
    assert (out.kind, out.code, out.message) == ("error", 403, "Out of credits.")
    assert out.reason == "credits: 4.5 left, 5 needed"
    assert out.cost == 0


def test_credits_short_on_body_transport(body_spec: spec.Spec) -> None:
    """Refuses a call costing more than the balance with body code 429 and the provider's message."""
    out = _run(body_spec.by_id["split"], _request({**SPLIT, "type": "split_stem"}),
               account={"credits": 49.0, "extra_credits": 0.0})
    assert (out.kind, out.code, out.message) == ("error", 429, "The current credits are insufficient.")


def test_credits_code_comes_from_the_provider_outcomes(status_spec: spec.Spec) -> None:
    """Uses the code the provider's `outcomes.credits` names, worded by its message or 'Error <code>'."""
    op = status_spec.by_id["createClip"]
    provider = dataclasses.replace(op.provider, outcomes={**op.provider.outcomes, "credits": 402})
    out = _run(dataclasses.replace(op, provider=provider), _request(CLIP), account={"credits": 0, "extra_credits": 0})
    assert (out.code, out.message) == (402, "Error 402")


def test_enough_credits_succeeds_with_the_cost(status_spec: spec.Spec) -> None:
    """Succeeds with the call's cost when credits and extra credits together cover it exactly."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP), account={"credits": 1.0, "extra_credits": 4.0})
    assert (out.kind, out.code, out.reason, out.cost, out.message) == ("success", 200, "success", 5.0, None)
    assert out.as_dict() == {"kind": "success", "code": 200, "reason": "success", "cost": 5.0}


def test_costs_come_from_the_view(status_spec: spec.Spec) -> None:
    """Prices the call from the view's costs, not from the spec."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP), FakeView(costs={"clip": 7}))
    assert out.cost == 7.0


def test_free_call_does_not_read_the_balance(status_spec: spec.Spec) -> None:
    """Succeeds at no cost without reading the balance when the call is free."""
    view = FakeView(costs={}, account={"credits": 0, "extra_credits": 0})
    out = _run(status_spec.by_id["createClip"], _request(CLIP), view)
    assert (out.kind, out.cost) == ("success", 0)
    assert "balance" not in view.reads


def test_maintenance_beats_precheck_and_credits(status_spec: spec.Spec) -> None:
    """Answers a call during maintenance with the provider's maintenance code before anything else."""
    view = FakeView(costs={"clip": 5}, maintenance=True, refusal=Refusal(404, "no", "precheck"))
    out = _run(status_spec.by_id["createClip"], _request(CLIP), view)
    assert (out.kind, out.code) == ("error", 503)
    assert "precheck" not in view.reads and "balance" not in view.reads


def test_full_rate_window(status_spec: spec.Spec, body_spec: spec.Spec) -> None:
    """Answers a call the rate window refuses with the rate-limit code; status transport adds Retry-After."""
    out = _run(status_spec.by_id["createClip"], _request(CLIP), wait=2.2)
    assert (out.kind, out.code, out.headers) == ("error", 429, {"Retry-After": "3"})
    assert not out.admitted
    out = _run(body_spec.by_id["split"], _request(SPLIT), wait=2.2)
    assert (out.kind, out.code, out.message, out.headers) == ("error", 430, "Your call frequency is too high.", {})


# -- cost_key and Outcome ---------------------------------------------------------------------------


def test_cost_key_selected_by_a_body_field(body_spec: spec.Spec) -> None:
    """Reads the cost key from the named body field, else the declared default."""
    op = body_spec.by_id["split"]
    assert cost_key(op, _request({**SPLIT, "type": "split_stem"})) == "split_stem"
    assert cost_key(op, _request(SPLIT)) == "separate_vocal"
    assert _run(op, _request({**SPLIT, "type": "split_stem"})).cost == 50.0
    assert _run(op, _request(SPLIT)).cost == 10.0


def test_cost_key_fixed_or_absent(status_spec: spec.Spec) -> None:
    """Reads a fixed cost key as is, and None for an operation without one."""
    assert cost_key(status_spec.by_id["createClip"], _request(CLIP)) == "clip"
    assert cost_key(status_spec.by_id["health"], _request()) is None
    op = dataclasses.replace(status_spec.by_id["health"], x_mock={"cost": {"field": "tier"}})
    assert cost_key(op, _request({"other": 1})) is None


def test_outcome_as_dict_omits_empty_fields() -> None:
    """Leaves message, example and cost out of the dict when unset."""
    assert Outcome("rejected", 400, "r").as_dict() == {"kind": "rejected", "code": 400, "reason": "r"}
    assert Outcome("example", 202, "r", example="e").as_dict() == {"kind": "example", "code": 202, "reason": "r",
                                                                   "example": "e"}
